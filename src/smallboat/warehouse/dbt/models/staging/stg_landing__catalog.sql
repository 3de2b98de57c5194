-- The landed catalog rows with their canonical columns and types. A SKU loaded twice appears twice;
-- sku_features picks one row per SKU.
with source as (

    select * from {{ landing_table('catalog') }}

),

final as (

    select
        cast(product_sku_hash as {{ dbt.type_string() }}) as product_sku_hash,
        description_vector,
        cast(category_hash as {{ dbt.type_string() }}) as category_hash,
        image_vector,
        cast(price_bucket as {{ dbt.type_int() }}) as price_bucket
    from source

)

select * from final
