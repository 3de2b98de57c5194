-- event_index never goes back in time, and every session has as many events as `sessions` says
-- (that it runs 1..n without gaps or repeats is session_events' key test).
-- Fails once per session whose numbering is broken.
with session_events as (

    select * from {{ ref('session_events') }}

),

sessions as (

    select * from {{ ref('sessions') }}

),

with_previous as (

    select
        session_id_hash,
        event_index,
        server_timestamp_epoch_ms,
        lag(server_timestamp_epoch_ms) over (
            partition by session_id_hash order by event_index
        ) as previous_timestamp_ms
    from session_events

),

per_session as (

    select
        session_id_hash,
        count(*) as n_rows,
        count(case when server_timestamp_epoch_ms < previous_timestamp_ms then 1 end)
            as n_steps_back
    from with_previous
    group by session_id_hash

),

final as (

    select
        per_session.*,
        sessions.n_events
    from per_session
    left join sessions
        on sessions.session_id_hash = per_session.session_id_hash
    where sessions.n_events is null
        or sessions.n_events != per_session.n_rows
        or per_session.n_steps_back > 0

)

select * from final
