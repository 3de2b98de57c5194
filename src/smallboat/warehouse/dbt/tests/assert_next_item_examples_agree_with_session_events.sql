-- Each next-item example points at its target in `session_events`: the event right after the
-- prefix (event_index = prefix_length + 1) is a detail of target_sku_hash before the session's
-- first purchase, and the prefix holds exactly n_prior_details details. Also repeats the session's
-- split. Fails once per example that disagrees.
with next_item_examples as (

    select * from {{ ref('next_item_examples') }}

),

session_events as (

    select * from {{ ref('session_events') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

prefix_details as (

    select
        next_item_examples.session_id_hash,
        next_item_examples.detail_position,
        count(*) as n_details_in_prefix
    from next_item_examples
    inner join session_events
        on session_events.session_id_hash = next_item_examples.session_id_hash
        and session_events.event_index <= next_item_examples.prefix_length
        and session_events.action = 'detail'
        and session_events.product_sku_hash is not null
    group by
        next_item_examples.session_id_hash,
        next_item_examples.detail_position

),

final as (

    select
        next_item_examples.session_id_hash,
        next_item_examples.detail_position,
        targets.action as target_action,
        targets.product_sku_hash as target_sku_in_events,
        prefix_details.n_details_in_prefix,
        sessions.split as session_split
    from next_item_examples
    left join session_events as targets
        on targets.session_id_hash = next_item_examples.session_id_hash
        and targets.event_index = next_item_examples.prefix_length + 1
    left join prefix_details
        on prefix_details.session_id_hash = next_item_examples.session_id_hash
        and prefix_details.detail_position = next_item_examples.detail_position
    left join sessions
        on sessions.session_id_hash = next_item_examples.session_id_hash
    where targets.action is distinct from 'detail'
        or targets.product_sku_hash is distinct from next_item_examples.target_sku_hash
        or not targets.is_before_first_purchase
        or prefix_details.n_details_in_prefix is distinct from next_item_examples.n_prior_details
        or sessions.split is distinct from next_item_examples.split

)

select * from final
