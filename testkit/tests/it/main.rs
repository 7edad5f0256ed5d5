//! The integration tests of `testkit`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod amqp_backend;
mod azure_backend;
mod expiry;
mod nats_backend;
mod nsq_backend;
mod nsq_fake_nsqd;
mod redis_backend;
