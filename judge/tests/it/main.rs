//! The integration tests of `judge`, in one binary: a binary per file linked the whole workspace each
//! time. nextest still runs every test in a process of its own.

mod amqp_demo;
mod audit;
mod broken_pipes;
mod build;
mod cli_contract;
mod cli_values;
mod compare;
mod containers_common;
mod containers_compose;
mod containers_image;
mod containers_k8s;
mod containers_telemetry;
mod demo;
mod demo_report;
mod demo_tty;
mod engine;
mod engine_demo;
mod engine_demo_run;
mod engine_scorecard;
mod prometheus;
mod redis_demo;
mod scorecard;
mod secrets;
mod telemetry;
mod telemetry_watch;
