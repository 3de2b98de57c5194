-- The landed search queries with their canonical columns. The list columns (vectors, SKU lists)
-- pass through untouched: their types differ between warehouses (DuckDB lists, Snowflake arrays).
with source as (

    select * from {{ landing_table('search_events') }}

),

final as (

    select
        cast(session_id_hash as {{ dbt.type_string() }}) as session_id_hash,
        query_vector,
        clicked_skus_hash,
        product_skus_hash,
        cast(server_timestamp_epoch_ms as {{ dbt.type_bigint() }}) as server_timestamp_epoch_ms
    from source

)

select * from final
