//! The `docker:LABEL=VALUE` consumer-count source: containers running on a Docker host that carry a label,
//! read from the Docker Engine API (bollard, over the unix socket only). Any engine that scales containers on
//! one host, `docker compose up --scale` by hand included, can be graded with it, e.g.
//! `docker:com.docker.compose.service=sqlite-consumer`.

use bollard::Docker;
use bollard::query_parameters::ListContainersOptions;
use std::collections::HashMap;

/// The daemon's socket: `DOCKER_HOST` when it names a unix socket, else Docker's default.
pub fn socket() -> Result<String, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => Ok(h),
        Ok(h) if !h.is_empty() => Err(format!(
            "DOCKER_HOST={} is not a unix socket (unix:///PATH): the docker: source reads a local engine only",
            workload::redact::url(&h)
        )),
        _ => Ok("unix:///var/run/docker.sock".into()),
    }
}

/// A client for the daemon at `socket`, speaking the highest API version both sides know (Engine 20.10
/// stops at 1.41, which is older than the client's default).
///
/// # Errors
/// When the socket cannot be reached or the daemon does not answer `/version`.
pub async fn connect(socket: &str) -> Result<Docker, bollard::errors::Error> {
    // bollard's timeout is in seconds, for each request.
    Docker::connect_with_unix(socket, 10, bollard::API_DEFAULT_VERSION)?
        .negotiate_version()
        .await
}

/// How many containers are running with `label` set to `value` (any value when `None`).
///
/// # Errors
/// When the daemon cannot be reached or refuses the list.
pub async fn running(
    socket: &str,
    label: &str,
    value: Option<&str>,
) -> Result<usize, bollard::errors::Error> {
    let docker = connect(socket).await?;
    let filter = match value {
        Some(v) => format!("{label}={v}"),
        None => label.to_string(),
    };
    let options = ListContainersOptions {
        all: false,
        filters: Some(HashMap::from([
            ("label".to_string(), vec![filter]),
            ("status".to_string(), vec!["running".to_string()]),
        ])),
        ..Default::default()
    };
    Ok(docker.list_containers(Some(options)).await?.len())
}

/// Parses `LABEL=VALUE` or `LABEL` (the text after `docker:`).
pub fn parse(spec: &str) -> Option<(String, Option<String>)> {
    let (label, value) = match spec.split_once('=') {
        Some((l, v)) => (l, Some(v.to_string())),
        None => (spec, None),
    };
    let ok = !label.is_empty()
        && !label
            .chars()
            .any(|c| c.is_whitespace() || c == ',' || c == '=')
        && value.as_ref().is_none_or(|v| !v.is_empty());
    ok.then(|| (label.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_with_or_without_a_value() {
        assert_eq!(
            parse("com.docker.compose.service=sqlite-consumer"),
            Some((
                "com.docker.compose.service".into(),
                Some("sqlite-consumer".into())
            ))
        );
        assert_eq!(
            parse("io.example.role"),
            Some(("io.example.role".into(), None))
        );
        for bad in ["", "=x", "a=", "a b=c"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
