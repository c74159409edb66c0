//! registrator: registers the published ports of running Docker containers as services in a
//! registry, and deregisters them when the containers stop. A drop-in for
//! gliderlabs/registrator (same flags, `SERVICE_*` metadata and registry URIs).
//!
//! The binary (`src/main.rs`) parses the command line and calls [`daemon::run`]; everything
//! else is this library, which the benchmark, the registry tests and the fuzz targets use too.
//!
//! # Threads, one per concern
//!
//! ```text
//!   events thread ──Msg::Event / Msg::Sync──┐
//!   (watcher, docker::EventStream)          ├──> mpsc ──> worker thread (bridge::Bridge)
//!   main thread ──Msg::Shutdown─────────────┤             owns docker::Client, the backend,
//!   zookeeper session ──Msg::RegistryLost───┘             what should be registered, and
//!        ^                                                its outbox of pending changes
//!        └── mpsc <── signals thread (SIGTERM, SIGINT)
//! ```
//!
//! - **events** ([`watcher`]): holds the `/events` subscription, reconnects with backoff when
//!   the engine goes away, replays missed events with `since=`, and asks for a full sync after
//!   every (re)connect. Marks each event live or replayed ([`bridge::Arrival`]): only a
//!   replayed `die` is checked against the engine before its services go. Blocks in `read`;
//!   no timers. With `-swarm` the subscription has swarm service and node events too.
//! - **worker** ([`bridge`]): applies messages strictly in arrival order, so one container's
//!   events are handled in the engine's order. Inspects containers over its own kept-alive
//!   connection, turns them into services with the pure [`service::services`], and hands each
//!   change to its outbox ([`bridge::outbox`]), the only retry queue, which calls the
//!   [`backend::Backend`]. Timers (`-resync`, `-ttl-refresh`, retries, health reports) are
//!   deadlines in its `recv_timeout`; the current time is an argument of everything below it.
//!   With `-swarm` on a manager it also turns swarm services into entries (`bridge/swarm.rs`),
//!   kept beside the containers' so that every path above treats them alike.
//! - **lanes** ([`bridge::lanes`], Consul only): two threads, each with a registry connection of
//!   its own, started at the first sync of more than two containers or when the registry is
//!   slow. They make a sync's calls while the worker inspects the next containers, and, while
//!   the registry is slow, the events' calls while the worker takes up the next events. They
//!   only make the call they are handed and say so on the worker's input; the worker settles
//!   what the registry said, keeps one change per registry entry in flight, and waits for a
//!   sync's calls before its next message.
//!   A `-tags` template that calls `httpGet` runs on the worker too: at most 5 s per call, once
//!   per service when it is first registered.
//! - **zookeeper** ([`backend::zookeeper`], that backend only): the one owner of the ZooKeeper
//!   connection. It answers the worker's requests, pings the session, and reconnects on a
//!   helper thread of its own, so a reconnect never blocks the worker (whose calls fail at once
//!   meanwhile and are retried by the outbox). A new session tells the worker to register
//!   everything again.
//! - **signals**: turns SIGTERM/SIGINT into a message to main.
//! - **main** ([`daemon`]): pings the registry (with `-retry-*`, its pauses cut short by a
//!   signal), starts the worker and events threads, then waits for a signal, tells the worker
//!   to stop and exits 0 within a second.
//!
//! # Where things live
//!
//! | concern | file |
//! |---|---|
//! | command line, `-help` text | [`cli`] |
//! | thread wiring, start-up ping, shutdown | [`daemon`] |
//! | the worker: containers, events, sync, `-cleanup`, shutdown | [`bridge`] (`bridge/mod.rs`) |
//! | delivery: pending changes, backoff, outages | [`bridge::outbox`] |
//! | registry calls made beside the worker (a sync, a slow registry) | [`bridge::lanes`] |
//! | Docker health mirrored to registry checks | [`bridge::health`] |
//! | `-swarm` in the worker: this node's role, swarm services' entries | `bridge/swarm.rs` |
//! | the event reader and its reconnects | [`watcher`] |
//! | sans-I/O HTTP/1.1 response head and body decoder | [`docker::http`] |
//! | event line splitting and decoding | [`docker::events`] |
//! | the inspect JSON fields read | [`docker::container`] |
//! | the swarm answers read (`/info`, `/nodes`, `/services`) | [`docker::swarm`] |
//! | the socket I/O around those cores | [`docker`] (`docker/mod.rs`) |
//! | container (or swarm service) + flags -> services (spec section 4), pure | [`service`] |
//! | Go templates in tags: parser, evaluator over the inspect JSON, helpers | [`template`] |
//! | `httpGet` of `-tags` templates: one bounded HTTP GET | [`httpget`] |
//! | our own TCP streams, plain or TLS (engine over TLS, `httpGet` of https) | [`tls`] |
//! | the registry interface, URI schemes, `Health` | [`backend`] (`backend/mod.rs`) |
//! | one file (or folder) per backend, each a cargo feature | `backend/consul.rs`, `consulkv.rs`, `etcd/`, `zookeeper/`, `file.rs` |
//! | what the HTTP and the key-value backends share | [`backend::http`], [`backend::kv`] |
//! | capped doubling backoff | [`backoff`] |
//! | percent-encoding | [`percent`] |

#[cfg(not(any(
    feature = "consul",
    feature = "consulkv",
    feature = "_etcd2",
    feature = "_etcd3",
    feature = "zookeeper",
    feature = "file"
)))]
compile_error!(
    "no registry backend in this build: enable at least one of the cargo features consul, \
     consulkv, etcd, skydns2, coredns, zookeeper, file (tls alone is not a backend)"
);

pub mod backend;
pub mod backoff;
pub mod bridge;
pub mod cli;
pub mod daemon;
pub mod docker;
#[cfg(feature = "templates")]
pub mod httpget;
pub mod percent;
pub mod service;
#[cfg(feature = "templates")]
pub mod template;
/// Without the `templates` feature: a tag value with `{{` is still told apart, and is an error.
#[cfg(not(feature = "templates"))]
#[path = "template/none.rs"]
pub mod template;
pub mod tls;
pub mod watcher;
