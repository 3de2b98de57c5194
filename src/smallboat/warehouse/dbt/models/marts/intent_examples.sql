-- The purchase-intent task's examples: one row per (session, k). THIS DEFINITION IS A CONTRACT:
-- the synthetic generator's oracle file lists exactly the same (session_id_hash, k) pairs.
--
-- 1. The cut session: only events with is_before_first_purchase; n_cut = their count.
-- 2. Population: sessions whose cut part contains an `add`; first_add_index = event_index of the
--    first add in it.
-- 3. For k in (0, 2, 4, 6, 8, 10) a row exists when first_add_index + k <= n_cut, with
--    prefix_length = first_add_index + k: the number of collapsed events in the prefix, counted
--    from the session's first event. prefix_end_at_ms is the timestamp of its last event.
-- 4. label = 1 when the session has a purchase (always after the prefix), else 0.
with session_events as (

    select * from {{ ref('session_events') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

population as (

    -- The cut session is the events before the first purchase, so n_cut = first_purchase_index - 1
    -- (or every event when there is no purchase), and the first add counts only when it comes
    -- before the first purchase. `sessions` holds both indexes: no need to rescan the events.
    select
        session_id_hash,
        first_add_index,
        coalesce(first_purchase_index - 1, n_events) as n_cut
    from sessions
    where first_add_index is not null
        and (first_purchase_index is null or first_add_index < first_purchase_index)

),

prediction_points as (

    {% for k in var('intent_prediction_points') -%}
    select {{ k }} as k
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

examples as (

    select
        population.session_id_hash,
        prediction_points.k,
        population.first_add_index + prediction_points.k as prefix_length,
        population.first_add_index
    from population
    cross join prediction_points
    where population.first_add_index + prediction_points.k <= population.n_cut

),

prefix_ends as (

    select
        examples.*,
        session_events.server_timestamp_epoch_ms as prefix_end_at_ms
    from examples
    inner join session_events
        on session_events.session_id_hash = examples.session_id_hash
        and session_events.event_index = examples.prefix_length

),

final as (

    select
        prefix_ends.session_id_hash,
        prefix_ends.k,
        prefix_ends.prefix_length,
        prefix_ends.first_add_index,
        prefix_ends.prefix_end_at_ms,
        sessions.started_at_ms as session_started_at_ms,
        case when sessions.has_purchase then 1 else 0 end as label,
        sessions.split
    from prefix_ends
    inner join sessions
        on sessions.session_id_hash = prefix_ends.session_id_hash

)

select * from final
