-- One row per SKU known to the shop: every catalog SKU plus every SKU seen in browsing.
--
-- The catalog may hold a SKU more than once (a file loaded twice). Landing rows carry no load time,
-- so the pick is by content, deterministically: the most complete row wins (category, price,
-- description, image present), then the smallest values.
-- Popularity counts come from TRAIN-split sessions only, so no valid/test behaviour leaks into
-- features a model is trained or evaluated with.
with catalog as (

    select * from {{ ref('stg_landing__catalog') }}

),

session_events as (

    select * from {{ ref('session_events') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

catalog_ranked as (

    select
        *,
        row_number() over (
            partition by product_sku_hash
            order by
                case when category_hash is null then 1 else 0 end,
                case when price_bucket is null then 1 else 0 end,
                case when description_vector is null then 1 else 0 end,
                case when image_vector is null then 1 else 0 end,
                category_hash,
                price_bucket,
                cast(description_vector as {{ dbt.type_string() }}),
                cast(image_vector as {{ dbt.type_string() }})
        ) as n_pick
    from catalog

),

catalog_skus as (

    select
        product_sku_hash,
        category_hash,
        nullif({{ dbt.split_part('category_hash', "'/'", 1) }}, '') as top_category_hash,
        price_bucket,
        description_vector,
        image_vector
    from catalog_ranked
    where n_pick = 1

),

browsed_skus as (

    select distinct product_sku_hash
    from session_events
    where product_sku_hash is not null

),

train_popularity as (

    select
        session_events.product_sku_hash,
        count(case when session_events.action = 'detail' then 1 end) as n_train_views,
        count(case when session_events.action = 'add' then 1 end) as n_train_adds,
        count(case when session_events.action = 'purchase' then 1 end) as n_train_purchases
    from session_events
    inner join sessions
        on sessions.session_id_hash = session_events.session_id_hash
    where sessions.split = 'train'
        and session_events.product_sku_hash is not null
    group by session_events.product_sku_hash

),

all_skus as (

    select product_sku_hash from catalog_skus
    union
    select product_sku_hash from browsed_skus

),

final as (

    select
        all_skus.product_sku_hash,
        catalog_skus.product_sku_hash is not null as is_in_catalog,
        browsed_skus.product_sku_hash is not null as is_seen_in_browsing,
        catalog_skus.category_hash,
        catalog_skus.top_category_hash,
        catalog_skus.price_bucket,
        catalog_skus.description_vector is not null as has_description_vector,
        catalog_skus.image_vector is not null as has_image_vector,
        catalog_skus.description_vector,
        catalog_skus.image_vector,
        coalesce(train_popularity.n_train_views, 0) as n_train_views,
        coalesce(train_popularity.n_train_adds, 0) as n_train_adds,
        coalesce(train_popularity.n_train_purchases, 0) as n_train_purchases
    from all_skus
    left join catalog_skus
        on catalog_skus.product_sku_hash = all_skus.product_sku_hash
    left join browsed_skus
        on browsed_skus.product_sku_hash = all_skus.product_sku_hash
    left join train_popularity
        on train_popularity.product_sku_hash = all_skus.product_sku_hash

)

select * from final
