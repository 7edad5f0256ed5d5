//! The integration tests of `consumer`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod amqp_delivery;
mod amqp_interop;
mod azure_delivery;
mod azure_interop;
mod dead_queue;
mod delivery;
mod failure;
mod loops;
mod metrics;
mod nats_delivery;
mod nats_interop;
mod nsq_delivery;
mod redis_delivery;
mod redis_interop;
mod telemetry_kill;
mod telemetry_slow;
mod work;
