//! Containers as the demo's children, through the Docker Engine API (bollard, unix socket only): what
//! `demo --engine docker` runs its producer, consumers and remainders with (the launcher is
//! [`super::containers`]).
//!
//! Every container carries the run's label, so that one call finds and removes everything the run made
//! (containers, networks, volumes), whether the run ended, was interrupted or failed. Scale-in is a
//! container stop: SIGTERM, then SIGKILL after a grace the caller sets longer than the consumer's drain.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};

/// The label that ties a container (network, volume) to one demo run; its value is the run id.
pub const RUN_LABEL: &str = "io.microscaling.demo.run";
/// The label naming a container's role (`consumer`, `producer`, `remainder`).
pub const ROLE_LABEL: &str = "io.microscaling.demo.role";

/// A failure of the Docker engine, with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("Docker engine at {socket}: cannot {action}: {source}")]
pub struct EngineError {
    socket: String,
    action: String,
    #[source]
    source: bollard::errors::Error,
}

/// One container to start.
pub struct Spec<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub image: &'a str,
    /// The command: the binary's name and its arguments (the image has no shell).
    pub cmd: Vec<String>,
    /// `HOST:CONTAINER` bind mounts (the run directory: queue file, ledgers).
    pub binds: Vec<String>,
    pub env: Vec<String>,
    /// `USER[:GROUP]` to run as, instead of the image's (non-root) user.
    pub user: Option<String>,
    /// Docker's wait between SIGTERM and SIGKILL on stop; longer than the drain.
    pub grace: Duration,
    /// The container's CPU weight (Docker's default is 1024); the remainder runs at the lowest.
    pub cpu_shares: Option<i64>,
}

/// What [`Engine::clean_up`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
    pub volumes: usize,
}

/// The containers of one run on one engine.
pub struct Engine {
    docker: Docker,
    socket: String,
    run: String,
}

impl Engine {
    /// Connects to the engine at `socket` (`unix:///…`) for run `run`.
    ///
    /// # Errors
    /// When the engine cannot be reached.
    pub async fn connect(socket: &str, run: &str) -> Result<Engine, EngineError> {
        let docker = crate::scorecard::sources::docker_connect(socket)
            .await
            .map_err(|source| EngineError {
                socket: socket.to_string(),
                action: "connect".into(),
                source,
            })?;
        Ok(Engine {
            docker,
            socket: socket.to_string(),
            run: run.to_string(),
        })
    }

    fn err(&self, action: String) -> impl FnOnce(bollard::errors::Error) -> EngineError + '_ {
        move |source| EngineError {
            socket: self.socket.clone(),
            action,
            source,
        }
    }

    fn run_filter(&self, extra: Option<(&str, &str)>) -> HashMap<String, Vec<String>> {
        let mut labels = vec![format!("{RUN_LABEL}={}", self.run)];
        if let Some((k, v)) = extra {
            labels.push(format!("{k}={v}"));
        }
        HashMap::from([("label".to_string(), labels)])
    }

    /// Creates and starts a container on the host's network (the demo's queues listen on loopback), with
    /// `--init` and the run's labels. One that fails to start is removed before the error is returned.
    ///
    /// # Errors
    /// When the engine refuses to create or start it.
    pub async fn start(&self, spec: &Spec<'_>) -> Result<String, EngineError> {
        let labels = HashMap::from([
            (RUN_LABEL.to_string(), self.run.clone()),
            (ROLE_LABEL.to_string(), spec.role.to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.clone()),
            labels: Some(labels),
            user: spec.user.clone(),
            stop_timeout: Some(i64::try_from(spec.grace.as_secs()).unwrap_or(i64::MAX)),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                init: Some(true),
                binds: Some(spec.binds.clone()),
                cpu_shares: spec.cpu_shares,
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.to_string()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(self.err(format!("create container {}", spec.name)))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            // Nothing left behind: a container that never ran is removed at once.
            let _ = self.remove(&created.id).await;
            return Err(self.err(format!("start container {}", spec.name))(e));
        }
        Ok(created.id)
    }

    /// Stops a container: SIGTERM, then SIGKILL after `grace`. Returns once it has exited.
    ///
    /// # Errors
    /// When the engine refuses (an unknown container, say).
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), EngineError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        self.docker
            .stop_container(id, Some(options))
            .await
            .map_err(self.err(format!("stop container {id}")))
    }

    /// Sends `signal` (`SIGTERM`, `SIGKILL`) to a running container.
    ///
    /// # Errors
    /// When the engine refuses (the container is not running, say).
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), EngineError> {
        let options = KillContainerOptions {
            signal: signal.to_string(),
        };
        self.docker
            .kill_container(id, Some(options))
            .await
            .map_err(self.err(format!("send {signal} to container {id}")))
    }

    /// Its stdout and stderr from its start, following until it exits.
    pub fn output(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + use<> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        self.docker.logs(id, Some(options))
    }

    /// Waits until the container is no longer running (a non-zero exit is not an error here).
    pub async fn wait(&self, id: &str) {
        use futures_util::StreamExt;
        let mut waiting = std::pin::pin!(self.docker.wait_container(id, None));
        // bollard reports a non-zero exit code as an error item: either way the container has stopped, or
        // the engine cannot tell, which the caller's inspect then says.
        let _ = waiting.next().await;
    }

    /// Whether the engine holds `image`.
    ///
    /// # Errors
    /// When the engine cannot be asked, or does not hold it.
    pub async fn check_image(&self, image: &str) -> Result<(), EngineError> {
        self.docker
            .inspect_image(image)
            .await
            .map(drop)
            .map_err(self.err(format!("find image {image}")))
    }

    /// The engine's socket, for messages.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The exit code of a container that has exited, `None` while it runs.
    ///
    /// # Errors
    /// When the engine cannot tell.
    pub async fn exit_code(&self, id: &str) -> Result<Option<i64>, EngineError> {
        let state = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(self.err(format!("inspect container {id}")))?
            .state
            .unwrap_or_default();
        Ok(if state.running == Some(true) {
            None
        } else {
            state.exit_code
        })
    }

    /// How many of the run's containers with `role` are running.
    ///
    /// # Errors
    /// When the engine cannot list them.
    pub async fn running(&self, role: &str) -> Result<usize, EngineError> {
        let mut filters = self.run_filter(Some((ROLE_LABEL, role)));
        filters.insert("status".into(), vec!["running".into()]);
        let options = ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        };
        Ok(self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(self.err("list containers".into()))?
            .len())
    }

    async fn remove(&self, id: &str) -> Result<(), bollard::errors::Error> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.docker.remove_container(id, Some(options)).await
    }

    /// Removes everything labelled with the run: containers (killed if still running), then networks and
    /// volumes. Call it on every way out of a run; it is idempotent.
    ///
    /// # Errors
    /// When the engine cannot list or remove something; the rest is still attempted first.
    pub async fn clean_up(&self) -> Result<Removed, EngineError> {
        let mut removed = Removed::default();
        let mut first_error = None;
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(self.run_filter(None)),
                ..Default::default()
            }))
            .await
            .map_err(self.err("list containers".into()))?;
        for c in containers.iter().filter_map(|c| c.id.as_deref()) {
            match self.remove(c).await {
                Ok(()) => removed.containers += 1,
                Err(e) => {
                    first_error.get_or_insert_with(|| self.err(format!("remove container {c}"))(e));
                }
            }
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(self.run_filter(None)),
            }))
            .await
            .map_err(self.err("list networks".into()))?;
        for n in networks.iter().filter_map(|n| n.id.as_deref()) {
            match self.docker.remove_network(n).await {
                Ok(()) => removed.networks += 1,
                Err(e) => {
                    first_error.get_or_insert_with(|| self.err(format!("remove network {n}"))(e));
                }
            }
        }
        let volumes = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(self.run_filter(None)),
            }))
            .await
            .map_err(self.err("list volumes".into()))?;
        for v in volumes.volumes.unwrap_or_default() {
            match self
                .docker
                .remove_volume(
                    &v.name,
                    None::<bollard::query_parameters::RemoveVolumeOptions>,
                )
                .await
            {
                Ok(()) => removed.volumes += 1,
                Err(e) => {
                    first_error
                        .get_or_insert_with(|| self.err(format!("remove volume {}", v.name))(e));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}
