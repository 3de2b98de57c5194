-- One row per collapsed event, numbered within its session.
--
-- 1. Each row gets a normalised `action`: 'pageview' for a plain pageview, else its product_action.
-- 2. A product page logs a `detail` event AND a `pageview` at the same millisecond: a pageview is
--    dropped when its session has a detail at the same server_timestamp_epoch_ms, so the pair
--    counts as ONE product event.
-- 3. Events are ordered by time, then by a deterministic tie-break (action rank, SKU, URL, and the
--    raw columns), and numbered 1.. per session (`event_index`). The ordering uses every column,
--    so rows that tie are exact duplicates (the same event logged twice): dense_rank() numbers
--    them once and only the first of each tie is kept. One sort does numbering and de-duplication.
-- 4. Each event knows whether it comes before its session's first purchase (in that order, a
--    purchase's same-millisecond page, product and cart events come first): the intent task only
--    sees the session before its first purchase. `sessions` carries the first purchase's index.
with browsing_events as (

    select * from {{ ref('stg_landing__browsing_events') }}

),

normalised as (

    select
        *,
        case when event_type = 'pageview' then 'pageview' else product_action end as action
    from browsing_events

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

first_purchases as (

    -- From the raw events: collapsing only drops pageviews, never a purchase.
    select
        session_id_hash,
        min(server_timestamp_epoch_ms) as first_purchase_at_ms
    from browsing_events
    where product_action = 'purchase'
    group by session_id_hash

),

ranked as (

    select
        collapsed.*,
        -- Same-millisecond events follow the funnel: a page, then its product, the cart, the order.
        case collapsed.action
            when 'pageview' then 1
            when 'detail' then 2
            when 'add' then 3
            when 'remove' then 4
            when 'purchase' then 5
            else 6
        end as action_rank,
        (
            first_purchases.first_purchase_at_ms is null
            or collapsed.server_timestamp_epoch_ms < first_purchases.first_purchase_at_ms
            or (
                collapsed.server_timestamp_epoch_ms = first_purchases.first_purchase_at_ms
                and collapsed.action <> 'purchase'
            )
        ) as is_before_first_purchase
    from collapsed
    left join first_purchases
        on first_purchases.session_id_hash = collapsed.session_id_hash

),

{#- The events' order within a session, spelled out in each over (): Snowflake has no named
    WINDOW clause (tests/integration/test_snowflake_sql.py parses the Snowflake build). -#}
{%- set session_order -%}
        partition by session_id_hash
        order by
            server_timestamp_epoch_ms,
            action_rank,
            product_sku_hash asc nulls first,
            hashed_url asc nulls first,
            event_type,
            product_action asc nulls first
{%- endset %}

numbered as (

    select
        *,
        dense_rank() over ({{ session_order }}) as event_index,
        row_number() over ({{ session_order }}) as row_in_session,
        rank() over ({{ session_order }}) as first_row_of_tie
    from ranked

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
        is_before_first_purchase
    from numbered
    where row_in_session = first_row_of_tie

)

select * from final
