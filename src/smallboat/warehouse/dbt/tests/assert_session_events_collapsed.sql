-- The detail/pageview pair is collapsed: no pageview shares its millisecond with a detail of the
-- same session. Fails once per leftover pageview.
with session_events as (

    select * from {{ ref('session_events') }}

),

details as (

    select distinct
        session_id_hash,
        server_timestamp_epoch_ms
    from session_events
    where action = 'detail'

),

final as (

    select
        session_events.session_id_hash,
        session_events.event_index,
        session_events.server_timestamp_epoch_ms
    from session_events
    inner join details
        on details.session_id_hash = session_events.session_id_hash
        and details.server_timestamp_epoch_ms = session_events.server_timestamp_epoch_ms
    where session_events.action = 'pageview'

)

select * from final
