-- One row per session: its time span, its collapsed event counts per action, and its split.
--
-- Splits follow session start time, never chance: sessions are ranked by started_at_ms and the
-- earliest (1 - valid - test) share is 'train', then 'valid', then the latest 'test'. Sessions that
-- start at the same millisecond share a rank, so a tie at a boundary lands on the earlier side, and
-- the last train session never starts after the first valid one.
with session_events as (

    select * from {{ ref('session_events') }}

),

aggregated as (

    select
        session_id_hash,
        min(server_timestamp_epoch_ms) as started_at_ms,
        max(server_timestamp_epoch_ms) as ended_at_ms,
        count(*) as n_events,
        count(case when action = 'pageview' then 1 end) as n_pageviews,
        count(case when action = 'detail' then 1 end) as n_details,
        count(case when action = 'add' then 1 end) as n_adds,
        count(case when action = 'remove' then 1 end) as n_removes,
        count(case when action = 'purchase' then 1 end) as n_purchases,
        min(case when action = 'add' then event_index end) as first_add_index,
        min(case when action = 'purchase' then event_index end) as first_purchase_index
    from session_events
    group by session_id_hash

),

ranked as (

    select
        *,
        -- rank(): tied start times share a position, so a tie never straddles a split boundary.
        rank() over (order by started_at_ms) - 1 as n_started_before,
        count(*) over () as n_sessions
    from aggregated

),

split as (

    select
        *,
        case
            when n_started_before < n_sessions * (
                1 - {{ var('split_valid_fraction') }} - {{ var('split_test_fraction') }}
            ) then 'train'
            when n_started_before < n_sessions * (1 - {{ var('split_test_fraction') }}) then 'valid'
            else 'test'
        end as split
    from ranked

),

final as (

    select
        session_id_hash,
        started_at_ms,
        ended_at_ms,
        n_events,
        n_pageviews,
        n_details,
        n_adds,
        n_removes,
        n_purchases,
        n_adds > 0 as has_add,
        n_purchases > 0 as has_purchase,
        first_add_index,
        first_purchase_index,
        split
    from split

)

select * from final
