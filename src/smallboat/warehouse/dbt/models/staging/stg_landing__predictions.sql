-- The landed prediction log with its canonical columns and types (smallboat.schema.PREDICTIONS).
-- Compaction lands each logged prediction once; nothing is dropped here.
with source as (

    select * from {{ landing_table('predictions') }}

),

final as (

    select
        cast(prediction_id as {{ dbt.type_string() }}) as prediction_id,
        cast(request_id as {{ dbt.type_string() }}) as request_id,
        cast(route as {{ dbt.type_string() }}) as route,
        cast(replica as {{ dbt.type_string() }}) as replica,
        cast(session_id_hash as {{ dbt.type_string() }}) as session_id_hash,
        cast(predicted_at_ms as {{ dbt.type_bigint() }}) as predicted_at_ms,
        cast(event_time_ms as {{ dbt.type_bigint() }}) as event_time_ms,
        cast(model_version as {{ dbt.type_string() }}) as model_version,
        cast(purchase_probability as {{ type_double() }}) as purchase_probability,
        cast(latency_ms as {{ type_double() }}) as latency_ms,
        cast(n_events as {{ dbt.type_int() }}) as n_events,
        cast(n_pageview as {{ dbt.type_int() }}) as n_pageview,
        cast(n_detail as {{ dbt.type_int() }}) as n_detail,
        cast(n_add as {{ dbt.type_int() }}) as n_add,
        cast(n_remove as {{ dbt.type_int() }}) as n_remove,
        cast(duration_s as {{ type_double() }}) as duration_s,
        cast(events_after_add as {{ dbt.type_int() }}) as events_after_add,
        cast(events_used as {{ dbt.type_int() }}) as events_used,
        cast(oov_skus as {{ dbt.type_int() }}) as oov_skus,
        cast(sku_events as {{ dbt.type_int() }}) as sku_events,
        cast(last_price as {{ dbt.type_string() }}) as last_price,
        cast(last_category as {{ dbt.type_string() }}) as last_category
    from source

)

select * from final
