-- One row per collapsed event, numbered within its session.
--
-- 1. Exact duplicate rows (the same file landed twice) are removed.
-- 2. Each row gets a normalised `action`: 'pageview' for a plain pageview, else its product_action.
-- 3. A product page logs a `detail` event AND a `pageview` at the same millisecond: a pageview is
--    dropped when its session has a detail at the same server_timestamp_epoch_ms, so the pair
--    counts as ONE product event.
-- 4. Events are ordered by time, then by a deterministic tie-break (action rank, SKU, URL, and the
--    raw columns), and numbered 1.. per session (`event_index`).
-- 5. Each event knows its session's first purchase (`first_purchase_index`, NULL when none) and
--    whether it comes before it: the intent task only sees the session before its first purchase.
with browsing_events as (

    select * from {{ ref('stg_landing__browsing_events') }}

),

deduplicated as (

    select distinct
        session_id_hash,
        event_type,
        product_action,
        product_sku_hash,
        server_timestamp_epoch_ms,
        hashed_url
    from browsing_events

),

normalised as (

    select
        *,
        case when event_type = 'pageview' then 'pageview' else product_action end as action
    from deduplicated

),

detail_moments as (

    select distinct
        session_id_hash,
        server_timestamp_epoch_ms
    from normalised
    where action = 'detail'

),

collapsed as (

    select normalised.*
    from normalised
    left join detail_moments
        on normalised.action = 'pageview'
        and detail_moments.session_id_hash = normalised.session_id_hash
        and detail_moments.server_timestamp_epoch_ms = normalised.server_timestamp_epoch_ms
    where detail_moments.session_id_hash is null

),

ranked as (

    select
        *,
        -- Same-millisecond events follow the funnel: a page, then its product, the cart, the order.
        case action
            when 'pageview' then 1
            when 'detail' then 2
            when 'add' then 3
            when 'remove' then 4
            when 'purchase' then 5
            else 6
        end as action_rank
    from collapsed

),

numbered as (

    select
        session_id_hash,
        row_number() over (
            partition by session_id_hash
            order by
                server_timestamp_epoch_ms,
                action_rank,
                product_sku_hash asc nulls first,
                hashed_url asc nulls first,
                event_type,
                product_action asc nulls first
        ) as event_index,
        server_timestamp_epoch_ms,
        action,
        event_type,
        product_action,
        product_sku_hash,
        hashed_url
    from ranked

),

with_first_purchase as (

    select
        *,
        min(case when action = 'purchase' then event_index end)
            over (partition by session_id_hash) as first_purchase_index
    from numbered

),

final as (

    select
        session_id_hash,
        event_index,
        server_timestamp_epoch_ms,
        action,
        event_type,
        product_action,
        product_sku_hash,
        hashed_url,
        first_purchase_index,
        (first_purchase_index is null or event_index < first_purchase_index)
            as is_before_first_purchase
    from with_first_purchase

)

select * from final
