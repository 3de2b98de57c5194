-- The next-item task's examples: one row per (session, detail_position), the session's detail
-- views from the second on. The input is the session so far (its first prefix_length collapsed
-- events, holding n_prior_details >= 1 detail views); the target is the SKU of the next detail.
--
-- 1. Only events before the session's first purchase count: what the prediction service sees of
--    a session (it cuts there too), so offline scores and served answers are about the same input.
-- 2. Details are numbered 1.. per session in event order (detail_position); every detail from the
--    second on is a target, its predecessors the input.
-- 3. prefix_length = the target's event_index - 1: every collapsed event before the target
--    (pageviews and cart events between two details included), as the intent task counts it.
-- 4. The split and start time come from `sessions`, so both tasks split sessions the same way.
with session_events as (

    select * from {{ ref('session_events') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

details as (

    select
        session_id_hash,
        event_index,
        server_timestamp_epoch_ms,
        product_sku_hash,
        row_number() over (
            partition by session_id_hash order by event_index
        ) as detail_position,
        lag(product_sku_hash) over (
            partition by session_id_hash order by event_index
        ) as previous_sku_hash
    from session_events
    where action = 'detail'
        and is_before_first_purchase
        and product_sku_hash is not null

),

targets as (

    select *
    from details
    where detail_position >= 2

),

final as (

    select
        targets.session_id_hash,
        targets.detail_position,
        targets.detail_position - 1 as n_prior_details,
        targets.event_index - 1 as prefix_length,
        targets.previous_sku_hash,
        targets.product_sku_hash as target_sku_hash,
        targets.server_timestamp_epoch_ms as target_at_ms,
        sessions.started_at_ms as session_started_at_ms,
        sessions.split
    from targets
    inner join sessions
        on sessions.session_id_hash = targets.session_id_hash

)

select * from final
