-- Delayed labels of the prediction log: a prediction learns its outcome from the events the
-- collector lands later. THE LABEL DEFINITION (issue 6, docs/monitoring.md):
--
-- 1. A prediction is labelled only when its session is known to the warehouse (the collector
--    landed events of that session id) and it carries the time of its prefix's last event.
-- 2. label = 1 when the session has a purchase at or after that time (the prefix the service saw
--    is cut before the first purchase, as in training).
-- 3. label = 0 when it has none and the session's last event is at least `monitor_session_gap_ms`
--    (30 minutes: a session ends after 30 idle minutes) before the watermark `as_of_ms`: the
--    latest event time landed, or the var `monitor_as_of_ms` when set.
-- 4. Otherwise the label is NULL: 'pending' (the session may still buy), 'unknown_session', or
--    'purchased_before' (the session bought before the prefix's last event: the service was not
--    told of the purchase, so the prediction answered a different question).
--
-- is_evaluation_point marks the predictions live quality is measured on, the population and
-- points of the intent task: a probability was given, the prefix has an add, it is k events after
-- the first add for k in `intent_prediction_points`, and it is the first answer of that model on
-- that (session, prefix length) (a click that adds no collapsed event, such as the pageview twin
-- of a detail, repeats the previous answer).
with predictions as (

    select * from {{ ref('stg_landing__predictions') }}

),

events as (

    select * from {{ ref('stg_landing__browsing_events') }}

),

watermark as (

    select
        coalesce(
            cast({{ var('monitor_as_of_ms', 'null') }} as {{ dbt.type_bigint() }}),
            max(server_timestamp_epoch_ms)
        ) as as_of_ms
    from events

),

outcomes as (

    select
        session_id_hash,
        min(case when product_action = 'purchase' then server_timestamp_epoch_ms end)
            as first_purchase_ms,
        max(server_timestamp_epoch_ms) as last_event_ms
    from events
    where session_id_hash in (
        select session_id_hash from predictions where session_id_hash is not null
    )
    group by session_id_hash

),

answers as (

    select
        predictions.*,
        row_number() over (
            partition by model_version, session_id_hash, n_events
            order by predicted_at_ms, prediction_id
        ) as nth_answer
    from predictions

),

labelled as (

    select
        answers.*,
        outcomes.first_purchase_ms,
        outcomes.last_event_ms,
        watermark.as_of_ms,
        case
            when answers.session_id_hash is null or answers.event_time_ms is null
                or outcomes.session_id_hash is null then 'unknown_session'
            when outcomes.first_purchase_ms >= answers.event_time_ms then 'positive'
            when outcomes.first_purchase_ms is not null then 'purchased_before'
            when outcomes.last_event_ms + {{ var('monitor_session_gap_ms') }} <= watermark.as_of_ms
                then 'negative'
            else 'pending'
        end as label_status
    from answers
    left join outcomes
        on outcomes.session_id_hash = answers.session_id_hash
    cross join watermark

),

final as (

    select
        prediction_id,
        request_id,
        route,
        replica,
        session_id_hash,
        predicted_at_ms,
        event_time_ms,
        model_version,
        purchase_probability,
        latency_ms,
        n_events,
        n_pageview,
        n_detail,
        n_add,
        n_remove,
        duration_s,
        events_after_add,
        events_used,
        oov_skus,
        sku_events,
        last_price,
        last_category,
        first_purchase_ms,
        last_event_ms,
        as_of_ms,
        label_status,
        case label_status when 'positive' then 1 when 'negative' then 0 end as label,
        coalesce(
            purchase_probability is not null
            and events_after_add in ({{ var('intent_prediction_points') | join(', ') }})
            and nth_answer = 1,
            false
        ) as is_evaluation_point
    from labelled

)

select * from final
