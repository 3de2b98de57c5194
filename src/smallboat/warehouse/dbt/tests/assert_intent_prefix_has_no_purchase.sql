-- No intent example may show its model a purchase: every event of the prefix
-- (event_index <= prefix_length) comes before the session's first purchase.
-- Fails once per example whose prefix contains a purchase.
with intent_examples as (

    select * from {{ ref('intent_examples') }}

),

purchases as (

    select
        session_id_hash,
        event_index
    from {{ ref('session_events') }}
    where action = 'purchase'

),

final as (

    select
        intent_examples.session_id_hash,
        intent_examples.k,
        intent_examples.prefix_length,
        min(purchases.event_index) as first_purchase_in_prefix
    from intent_examples
    inner join purchases
        on purchases.session_id_hash = intent_examples.session_id_hash
        and purchases.event_index <= intent_examples.prefix_length
    group by
        intent_examples.session_id_hash,
        intent_examples.k,
        intent_examples.prefix_length

)

select * from final
