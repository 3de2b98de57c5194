-- The landed browsing events with their canonical columns and types. Nothing is dropped, merged or
-- deduplicated here: session_events does that, so the tests below see the data as it landed.
with source as (

    select * from {{ landing_table('browsing_events') }}

),

final as (

    select
        cast(session_id_hash as {{ dbt.type_string() }}) as session_id_hash,
        cast(event_type as {{ dbt.type_string() }}) as event_type,
        cast(product_action as {{ dbt.type_string() }}) as product_action,
        cast(product_sku_hash as {{ dbt.type_string() }}) as product_sku_hash,
        cast(server_timestamp_epoch_ms as {{ dbt.type_bigint() }}) as server_timestamp_epoch_ms,
        cast(hashed_url as {{ dbt.type_string() }}) as hashed_url
    from source

)

select * from final
