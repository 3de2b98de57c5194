-- Splits are by session start time: every train session starts no later than any valid session,
-- and every valid session no later than any test session. Fails once per pair of splits out of order.
with sessions as (

    select * from {{ ref('sessions') }}

),

split_spans as (

    select
        split,
        min(started_at_ms) as first_start_ms,
        max(started_at_ms) as last_start_ms
    from sessions
    group by split

),

split_order as (

    select 'train' as split, 1 as split_rank
    union all
    select 'valid' as split, 2 as split_rank
    union all
    select 'test' as split, 3 as split_rank

),

ordered_spans as (

    select
        split_spans.*,
        split_order.split_rank
    from split_spans
    inner join split_order
        on split_order.split = split_spans.split

),

final as (

    select
        earlier.split as earlier_split,
        earlier.last_start_ms as earlier_last_start_ms,
        later.split as later_split,
        later.first_start_ms as later_first_start_ms
    from ordered_spans as earlier
    inner join ordered_spans as later
        on earlier.split_rank < later.split_rank
    where earlier.last_start_ms > later.first_start_ms

)

select * from final
