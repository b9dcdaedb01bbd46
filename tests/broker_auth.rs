//! The shipped broker configuration (deploy/nats-server.conf with the users
//! file `packgate broker-users` writes) under attack: no anonymous access,
//! and each user tries every escape an attacker with its password would:
//! purging the samples, deleting a consumer, creating a stream that
//! republishes onto the control subject, reading other clients' replies,
//! sending commands, writing to a bus or to a bank's limits (or taking
//! those), forging samples or bank states, resetting alarms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use packgate::broker::auth::write_private;
use packgate::broker::{
    ensure_consumer, ensure_streams, BrokerCredentials, BrokerUser, NatsServer, NatsServerOptions,
};
use packgate::config::StreamsConfig;
use packgate::workers::WorkerKind;
use packgate_protocol::names;

/// The shipped configuration, made to run in a test: its users file
/// beside it, a free port, a temporary store, no monitoring port.
async fn shipped_broker(dir: &Path) -> (NatsServer, BrokerCredentials) {
    let store = dir.join("store");
    std::fs::create_dir_all(&store).unwrap();
    let credentials = BrokerCredentials::load_or_create(&dir.join("creds.toml")).unwrap();
    write_private(
        &store.join("nats-users.conf"),
        &credentials.authorization_block(),
    )
    .unwrap();
    let shipped = include_str!("../deploy/nats-server.conf");
    for line in [
        "listen: 127.0.0.1:4222",
        "http: 127.0.0.1:8222",
        "store_dir: \"/var/lib/nats\"",
        "include \"nats-users.conf\"",
    ] {
        assert!(shipped.contains(line), "the shipped config lost {line:?}");
    }
    assert!(
        !shipped.contains("no_auth_user"),
        "an anonymous user is back"
    );
    // The port and the store come from the command line instead.
    let text = shipped
        .replace("http: 127.0.0.1:8222", "")
        .replace("store_dir: \"/var/lib/nats\"", "");
    let mut options = NatsServerOptions::new(&store);
    if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
        options.executable = path.into();
    }
    options.config_text = Some(text);
    let server = NatsServer::start(options)
        .await
        .expect("the shipped config starts");
    (server, credentials)
}

/// A connection as `user` that records the server's permission errors.
struct Attacker {
    client: async_nats::Client,
    violations: Arc<Mutex<Vec<String>>>,
}

impl Attacker {
    async fn connect(url: &str, credentials: &BrokerCredentials, user: BrokerUser) -> Self {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&violations);
        let client = async_nats::ConnectOptions::new()
            .user_and_password(
                user.name().to_owned(),
                credentials.password(user).unwrap().to_owned(),
            )
            .custom_inbox_prefix(user.inbox_prefix())
            .event_callback(move |event| {
                let seen = Arc::clone(&seen);
                async move {
                    if let async_nats::Event::ServerError(error) = event {
                        seen.lock().unwrap().push(error.to_string().to_lowercase());
                    }
                }
            })
            .connect(url)
            .await
            .unwrap();
        Self { client, violations }
    }

    /// Whether the server refused `subject` (after the action was flushed).
    async fn refused(&self, subject: &str) -> bool {
        let _ = self.client.flush().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let subject = subject.to_lowercase();
        self.violations
            .lock()
            .unwrap()
            .iter()
            .any(|v| v.contains("permissions violation") && v.contains(&subject))
    }

    /// Whether the server refused a subscription to `subject` (after it
    /// was flushed).
    async fn subscription_refused(&self, subject: &str) -> bool {
        let _ = self.client.flush().await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let subject = subject.to_lowercase();
        self.violations.lock().unwrap().iter().any(|v| {
            v.contains("permissions violation")
                && v.contains("subscription")
                && v.contains(&subject)
        })
    }

    /// Publishes to `subject`; whether the server refused it.
    async fn publish_refused(&self, subject: &str) -> bool {
        self.client
            .publish(subject.to_owned(), "forged".into())
            .await
            .unwrap();
        self.refused(subject).await
    }

    /// A JetStream API request; whether it got an answer.
    async fn api_answered(&self, subject: &str, body: &str) -> bool {
        let request = self
            .client
            .request(subject.to_owned(), body.to_owned().into());
        matches!(
            tokio::time::timeout(Duration::from_secs(1), request).await,
            Ok(Ok(_))
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broker_user_can_do_only_its_own_job() {
    let dir = tempfile::tempdir().unwrap();
    let (server, credentials) = shipped_broker(dir.path()).await;
    let url = server.url();

    // No credentials, no connection.
    let anonymous = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(&url)).await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "an anonymous client was let in"
    );

    // The setup user creates the streams and the data consumer, and the
    // collector publishes a sample.
    let setup = Attacker::connect(&url, &credentials, BrokerUser::Setup).await;
    let js = async_nats::jetstream::new(setup.client.clone());
    ensure_streams(&js, &StreamsConfig::default())
        .await
        .unwrap();
    ensure_consumer(&js, &names::DATA_CONSUMER).await.unwrap();
    let collect =
        Attacker::connect(&url, &credentials, BrokerUser::Worker(WorkerKind::Collect)).await;
    let collect_js = async_nats::jetstream::new(collect.client.clone());
    collect_js
        .publish("packgate.samples.p1", "sample".into())
        .await
        .unwrap()
        .await
        .expect("the collector may publish samples");

    for user in BrokerUser::all()
        .into_iter()
        .filter(|u| *u != BrokerUser::Setup)
    {
        let attacker = Attacker::connect(&url, &credentials, user).await;
        cannot_purge_delete_or_republish(&attacker, user).await;
        cannot_read_other_clients_replies(&attacker, &setup, user).await;
        publishes_and_takes_only_its_own(&attacker, user).await;
        only_data_reads_back_a_given_up_sample(&attacker, user).await;
        let may_reset = user == BrokerUser::Operator;
        assert_eq!(
            attacker.publish_refused(names::OUTPUTS_RESET_SUBJECT).await,
            !may_reset,
            "{user} and an alarm reset"
        );
    }

    // What the attempts would have destroyed is all still there.
    let mut stream = js.get_stream(names::SAMPLES_STREAM.name).await.unwrap();
    assert!(
        stream.info().await.unwrap().state.messages >= 1,
        "the samples were purged"
    );
    stream
        .consumer_info(names::DATA_CONSUMER.durable)
        .await
        .expect("the data consumer still exists");
    assert!(js.get_stream("EVIL").await.is_err(), "a stream was created");
    drop(server);
}

/// No user but the setup user purges the samples, deletes a consumer or
/// creates a stream that republishes onto the control subject.
async fn cannot_purge_delete_or_republish(attacker: &Attacker, user: BrokerUser) {
    let purge = format!("$JS.API.STREAM.PURGE.{}", names::SAMPLES_STREAM.name);
    assert!(
        !attacker.api_answered(&purge, "").await,
        "{user} purged the samples"
    );
    let delete = format!(
        "$JS.API.CONSUMER.DELETE.{}.{}",
        names::SAMPLES_STREAM.name,
        names::DATA_CONSUMER.durable
    );
    assert!(
        !attacker.api_answered(&delete, "").await,
        "{user} deleted a consumer"
    );
    let evil = r#"{"name":"EVIL","subjects":["_INBOX.evil"],"republish":{"src":">","dest":"packgate.control.command"}}"#;
    assert!(
        !attacker
            .api_answered("$JS.API.STREAM.CREATE.EVIL", evil)
            .await,
        "{user} created a stream"
    );
}

/// Other clients' replies (here the setup user's) stay private.
async fn cannot_read_other_clients_replies(
    attacker: &Attacker,
    setup: &Attacker,
    user: BrokerUser,
) {
    let mut snoop = attacker.client.subscribe("_INBOX.>").await.unwrap();
    assert!(
        attacker.refused("_INBOX.>").await,
        "{user} may read every inbox"
    );
    let _ = setup
        .client
        .request(
            format!("$JS.API.STREAM.INFO.{}", names::SAMPLES_STREAM.name),
            "".into(),
        )
        .await;
    let peek = tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut snoop),
    )
    .await;
    assert!(
        !matches!(peek, Ok(Some(_))),
        "{user} read another client's reply"
    );
}

/// Commands, bus writes, a bank's limits, bank states and samples: each
/// only from (or to) the user whose job it is.
async fn publishes_and_takes_only_its_own(attacker: &Attacker, user: BrokerUser) {
    // The operator's CLI, the cloud's commands and Home Assistant's
    // (the mqtt worker): each still checked and audited by the control
    // worker.
    let may_command = matches!(
        user,
        BrokerUser::Operator
            | BrokerUser::Worker(WorkerKind::Cloud)
            | BrokerUser::Worker(WorkerKind::Mqtt)
    );
    assert_eq!(
        attacker.publish_refused(names::CONTROL_SUBJECT).await,
        !may_command,
        "{user} and the control subject"
    );
    let may_write = user == BrokerUser::Worker(WorkerKind::Control);
    assert_eq!(
        attacker.publish_refused("packgate.bus.p1.write").await,
        !may_write,
        "{user} and a bus write"
    );
    // A bank's site limits: only the control worker sends the
    // validated commands, only the bank worker takes them.
    let bank_limits = names::bank_limits_subject(&packgate_protocol::BankId::new("house").unwrap());
    assert_eq!(
        attacker.publish_refused(&bank_limits).await,
        !may_write,
        "{user} and a bank's limits"
    );
    let _limits = attacker
        .client
        .subscribe(bank_limits.clone())
        .await
        .unwrap();
    assert_eq!(
        attacker.subscription_refused(&bank_limits).await,
        user != BrokerUser::Worker(WorkerKind::Bank),
        "{user} taking a bank's limits"
    );
    let may_state = user == BrokerUser::Worker(WorkerKind::Bank);
    assert_eq!(
        attacker.publish_refused("packgate.banks.house").await,
        !may_state,
        "{user} and a bank state"
    );
    let may_sample = user == BrokerUser::Worker(WorkerKind::Collect);
    assert_eq!(
        attacker.publish_refused("packgate.samples.p1").await,
        !may_sample,
        "{user} and a sample"
    );
}

/// The data worker hears when the broker gives up on a sample and reads
/// that one back (and no stored event); no other worker does either.
async fn only_data_reads_back_a_given_up_sample(attacker: &Attacker, user: BrokerUser) {
    let is_data = user == BrokerUser::Worker(WorkerKind::Data);
    let advisory = names::max_deliveries_advisory_subject(&names::DATA_CONSUMER);
    let _advisories = attacker.client.subscribe(advisory.clone()).await.unwrap();
    assert_eq!(
        attacker.refused(&advisory).await,
        !is_data,
        "{user} and the max-deliveries advisory"
    );
    let get = format!("$JS.API.STREAM.MSG.GET.{}", names::SAMPLES_STREAM.name);
    assert_eq!(
        attacker.api_answered(&get, r#"{"seq":1}"#).await,
        is_data || user == BrokerUser::Operator,
        "{user} and reading a stored sample"
    );
    let get_events = format!("$JS.API.STREAM.MSG.GET.{}", names::EVENTS_STREAM.name);
    if is_data {
        assert!(
            !attacker.api_answered(&get_events, r#"{"seq":1}"#).await,
            "{user} read a stored event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_needs_credentials_and_owns_its_store() {
    use std::os::unix::fs::PermissionsExt as _;

    use packgate::broker::server::ServerError;
    use packgate::broker::BrokerError;
    use packgate::config::Config;
    use packgate::runtime::{run_workers, Broker, WorkerSet, CREDENTIALS_FILE};
    use packgate::workers::collect::PackSet;
    use tokio_util::sync::CancellationToken;

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    if let Some(path) = std::env::var_os("PACKGATE_NATS_SERVER") {
        config.broker.nats_server_path = path.into();
    }
    config.collect.poll_interval_ms = 100;
    config.add_sim_packs(2).unwrap();
    // A bank, so its worker runs on its own user too.
    config.banks.push(packgate::config::BankConfig {
        inverter: None,
        name: packgate_protocol::BankId::new("house").unwrap(),
        packs: config.packs.iter().map(|p| p.id.clone()).collect(),
        pack_max_charge_a: None,
        pack_max_discharge_a: None,
        pack_capacity_ah: None,
        limits: packgate::bank::LimitRules::default(),
    });
    config.validate("test").unwrap();
    let broker = Broker::open(&config, "test").await.unwrap();
    let url = broker.server.as_ref().unwrap().url();
    let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the credentials are readable by others");
    let anonymous = tokio::time::timeout(Duration::from_secs(5), async_nats::connect(&url)).await;
    assert!(
        !matches!(anonymous, Ok(Ok(_))),
        "an anonymous client was let in"
    );

    // A second gateway on the same store is refused, not run beside.
    match Broker::open(&config, "second").await {
        Err(BrokerError::Server(ServerError::StoreInUse(_))) => {}
        other => panic!("a second broker on the store: {other:?}"),
    }

    // Every worker on its own user stores what the collector published.
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let packs = PackSet::from_config(&config).unwrap();
    let report = run_workers(&config, WorkerSet::all(), packs, &broker, shutdown)
        .await
        .unwrap();
    let published = report.collect.unwrap().samples_published.get();
    let data = report.data.unwrap();
    assert!(published >= 20, "published {published}");
    assert_eq!(data.samples_stored.get(), published);
    let monitor = report.monitor.unwrap();
    assert!(
        monitor.snapshots_stored.get() > 0,
        "the monitor stored no snapshot"
    );
    // The bank worker follows the samples and publishes its states, which
    // the data worker stores.
    let bank = report
        .workers
        .iter()
        .find(|(kind, _)| *kind == WorkerKind::Bank)
        .and_then(|(_, m)| m.get::<packgate::workers::bank::BankMetrics>())
        .expect("the bank worker ran");
    let states = bank.counts.states_published.get();
    assert!(states >= 1, "no bank state published");
    assert_eq!(bank.counts.publish_failures.get(), 0);
    assert!(bank.counts.samples_taken.get() >= 20);
    assert_eq!(data.bank_states_stored.get(), states);
    broker.close(dir.path()).await;
}
