-- Each intent example repeats its session's facts: label = has_purchase, the same split and start.
-- Fails once per example that disagrees.
with intent_examples as (

    select * from {{ ref('intent_examples') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

final as (

    select
        intent_examples.session_id_hash,
        intent_examples.k,
        intent_examples.label,
        sessions.has_purchase,
        intent_examples.split as example_split,
        sessions.split as session_split
    from intent_examples
    inner join sessions
        on sessions.session_id_hash = intent_examples.session_id_hash
    where intent_examples.label != case when sessions.has_purchase then 1 else 0 end
        or intent_examples.split != sessions.split
        or intent_examples.session_started_at_ms != sessions.started_at_ms

)

select * from final
