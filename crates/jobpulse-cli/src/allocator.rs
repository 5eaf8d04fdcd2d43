//! The process's allocator: jemalloc instead of glibc's malloc.
//!
//! An import of 20 000 students peaks at about 45 MB of heap (heaptrack), yet under glibc's
//! malloc the AI worker's resident memory rose 72 MiB over idle and stayed there: freed memory
//! spread over per-thread arenas is not returned. Under jemalloc the same import rises 39 MiB and
//! gives most of it back (scenario 13, docs/reliability.md). The API process gains the same way
//! from its many short-lived buffers.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
