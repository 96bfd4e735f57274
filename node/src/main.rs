//! `runnel`: the node (`server`, `coordinator`, `dev`) and Kafka's familiar
//! tools (`topics`, `console-producer`, `console-consumer`, `quorum status`).

use clap::{Parser, Subcommand};
use runnel::cli;
use runnel::runtime::settings::{load_server_properties, NodeSettings};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "runnel",
    version,
    about = "A replicated, partitioned commit log that speaks Kafka's protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker, coordinator or both from a Kafka server.properties.
    Server {
        config: String,
        /// key=value, overriding the file (repeatable).
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
    /// Run a coordinator from a ZooKeeper zoo.cfg (its id in dataDir/myid).
    Coordinator { config: String },
    /// Start a local 3-node cluster in this process (Ctrl-C stops it).
    Dev {
        #[arg(long, default_value = "runnel-dev")]
        dir: String,
        #[arg(long, default_value_t = 3)]
        nodes: u32,
        /// Kafka port of the first node; the others follow.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
    /// Create, list, describe and delete topics (kafka-topics.sh).
    Topics {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        #[arg(long)]
        create: bool,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        describe: bool,
        #[arg(long)]
        delete: bool,
        /// With --partitions: add partitions (CreatePartitions).
        #[arg(long)]
        alter: bool,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long)]
        partitions: Option<i32>,
        #[arg(long = "replication-factor")]
        replication_factor: Option<i16>,
        #[arg(long = "config")]
        configs: Vec<String>,
        #[arg(long = "if-not-exists")]
        if_not_exists: bool,
    },
    /// Describe or change a topic's configs (kafka-configs.sh).
    Configs {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        #[arg(long = "entity-type")]
        entity_type: String,
        #[arg(long = "entity-name")]
        entity_name: String,
        #[arg(long)]
        describe: bool,
        #[arg(long)]
        alter: bool,
        #[arg(long = "add-config")]
        add_config: Option<String>,
        #[arg(long = "delete-config")]
        delete_config: Option<String>,
    },
    /// Add, remove or list ACLs (kafka-acls.sh).
    Acls {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        #[arg(long)]
        add: bool,
        #[arg(long)]
        remove: bool,
        #[arg(long)]
        list: bool,
        /// --remove without asking (Runnel never asks).
        #[arg(long)]
        force: bool,
        #[arg(long = "allow-principal")]
        allow_principals: Vec<String>,
        #[arg(long = "deny-principal")]
        deny_principals: Vec<String>,
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        #[arg(long = "deny-host")]
        deny_hosts: Vec<String>,
        #[arg(long = "operation")]
        operations: Vec<String>,
        #[arg(long = "topic")]
        topics: Vec<String>,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long)]
        cluster: bool,
        #[arg(long = "transactional-id")]
        transactional_ids: Vec<String>,
        #[arg(long = "resource-pattern-type", default_value = "literal")]
        resource_pattern_type: String,
        #[arg(long)]
        principal: Option<String>,
    },
    /// Delete records below the given offsets (kafka-delete-records.sh).
    DeleteRecords {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        /// {"partitions": [{"topic": "t", "partition": 0, "offset": 3}], "version": 1}
        #[arg(long = "offset-json-file")]
        offset_json_file: String,
    },
    /// Each live broker and the API versions it serves (kafka-broker-api-versions.sh).
    BrokerApiVersions {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
    },
    /// Lines from stdin to a topic (kafka-console-producer.sh).
    ConsoleProducer {
        #[arg(long = "bootstrap-server", alias = "broker-list")]
        bootstrap_server: String,
        #[arg(long)]
        topic: String,
        #[arg(long = "property")]
        properties: Vec<String>,
        #[arg(long = "producer-property")]
        producer_properties: Vec<String>,
        /// Kafka's old spelling of acks.
        #[arg(long = "request-required-acks")]
        request_required_acks: Option<String>,
    },
    /// Records of a topic to stdout (kafka-console-consumer.sh).
    ConsoleConsumer {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        #[arg(long)]
        topic: String,
        #[arg(long = "from-beginning")]
        from_beginning: bool,
        #[arg(long)]
        partition: Option<i32>,
        /// A number, earliest or latest (needs --partition in Kafka; here optional).
        #[arg(long)]
        offset: Option<String>,
        #[arg(long = "max-messages")]
        max_messages: Option<u64>,
        /// Exit after this long without a message.
        #[arg(long = "timeout-ms")]
        timeout_ms: Option<u64>,
        /// Consume as a member of this consumer group (commits its offsets).
        #[arg(long)]
        group: Option<String>,
        #[arg(long = "property")]
        properties: Vec<String>,
        /// Consumer settings, e.g. group.id=g, auto.offset.reset=earliest.
        #[arg(long = "consumer-property")]
        consumer_properties: Vec<String>,
    },
    /// List, describe, reset and delete consumer groups (kafka-consumer-groups.sh).
    ConsumerGroups {
        #[arg(long = "bootstrap-server")]
        bootstrap_server: String,
        #[arg(long)]
        list: bool,
        #[arg(long)]
        describe: bool,
        #[arg(long = "reset-offsets")]
        reset_offsets: bool,
        #[arg(long)]
        delete: bool,
        /// With --list: show each group's state.
        #[arg(long)]
        state: bool,
        #[arg(long)]
        group: Vec<String>,
        #[arg(long)]
        topic: Option<String>,
        #[arg(long = "all-topics")]
        all_topics: bool,
        #[arg(long = "to-earliest")]
        to_earliest: bool,
        #[arg(long = "to-latest")]
        to_latest: bool,
        #[arg(long = "to-offset")]
        to_offset: Option<i64>,
        #[arg(long = "shift-by", allow_hyphen_values = true)]
        shift_by: Option<i64>,
        #[arg(long)]
        execute: bool,
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// The coordinator quorum.
    Quorum {
        #[command(subcommand)]
        command: QuorumCommand,
    },
}

#[derive(Subcommand)]
enum QuorumCommand {
    /// Each coordinator's mode, epoch and commit offset (zkServer.sh status).
    Status {
        /// Coordinator addresses: zoo.cfg clientPorts or controller listeners.
        #[arg(
            long = "bootstrap-server",
            alias = "bootstrap-controller",
            alias = "zookeeper"
        )]
        servers: String,
        #[arg(long = "cluster-id", default_value = "runnel")]
        cluster_id: String,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run_node(settings: NodeSettings) -> anyhow::Result<()> {
    let (_handle, task) = runnel::runtime::start(settings).await?;
    tokio::select! {
        _ = task => anyhow::bail!("the node stopped"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    let kv = cli::key_values;
    match cli.command {
        Command::Server { config, overrides } => {
            let text =
                std::fs::read_to_string(&config).map_err(|e| anyhow::anyhow!("{config}: {e}"))?;
            let settings = load_server_properties(&text, &overrides)
                .map_err(|e| anyhow::anyhow!("{config}: {e}"))?;
            run_node(settings).await?;
        }
        Command::Coordinator { config } => {
            let text =
                std::fs::read_to_string(&config).map_err(|e| anyhow::anyhow!("{config}: {e}"))?;
            let settings =
                NodeSettings::from_zoo_cfg(&text).map_err(|e| anyhow::anyhow!("{config}: {e}"))?;
            run_node(settings).await?;
        }
        Command::Dev {
            dir,
            nodes,
            port,
            overrides,
        } => {
            cli::dev::run(cli::dev::DevArgs {
                dir,
                nodes,
                port,
                overrides,
            })
            .await?;
        }
        Command::Topics {
            bootstrap_server,
            create,
            list,
            describe,
            delete,
            alter,
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => {
            let args = cli::topics::TopicsArgs {
                bootstrap: bootstrap_server,
                create,
                list,
                describe,
                delete,
                alter,
                topic,
                partitions,
                replication_factor,
                configs: kv(&configs)?,
                if_not_exists,
            };
            cli::topics::run(args).await?;
        }
        Command::Configs {
            bootstrap_server,
            entity_type,
            entity_name,
            describe,
            alter,
            add_config,
            delete_config,
        } => {
            cli::configs::run(cli::configs::ConfigsArgs {
                bootstrap: bootstrap_server,
                entity_type,
                entity_name,
                describe,
                alter,
                add_config,
                delete_config,
            })
            .await?;
        }
        Command::Acls {
            bootstrap_server,
            add,
            remove,
            list,
            force: _,
            allow_principals,
            deny_principals,
            allow_hosts,
            deny_hosts,
            operations,
            topics,
            groups,
            cluster,
            transactional_ids,
            resource_pattern_type,
            principal,
        } => {
            let args = cli::acls::AclsArgs {
                bootstrap: bootstrap_server,
                add,
                remove,
                list,
                allow_principals,
                deny_principals,
                allow_hosts,
                deny_hosts,
                operations,
                topics,
                groups,
                cluster,
                transactional_ids,
                pattern_type: resource_pattern_type,
                principal,
            };
            cli::acls::run(args).await?;
        }
        Command::DeleteRecords {
            bootstrap_server,
            offset_json_file,
        } => {
            cli::delete_records::run(&bootstrap_server, &offset_json_file).await?;
        }
        Command::BrokerApiVersions { bootstrap_server } => {
            cli::topics::broker_api_versions(&bootstrap_server).await?;
        }
        Command::ConsoleProducer {
            bootstrap_server,
            topic,
            properties,
            producer_properties,
            request_required_acks,
        } => {
            let mut producer_properties = kv(&producer_properties)?;
            if let Some(a) = request_required_acks {
                producer_properties.push(("acks".into(), a));
            }
            let args = cli::console::ProducerArgs {
                bootstrap: bootstrap_server,
                topic,
                properties: kv(&properties)?,
                producer_properties,
            };
            cli::console::produce(args).await?;
        }
        Command::ConsoleConsumer {
            bootstrap_server,
            topic,
            from_beginning,
            partition,
            offset,
            max_messages,
            timeout_ms,
            group,
            properties,
            consumer_properties,
        } => {
            let mut properties = kv(&properties)?;
            properties.extend(kv(&consumer_properties)?);
            let args = cli::console::ConsumerArgs {
                bootstrap: bootstrap_server,
                topic,
                from_beginning,
                partition,
                offset,
                max_messages,
                timeout_ms,
                group,
                properties,
            };
            cli::console::consume(args).await?;
        }
        Command::ConsumerGroups {
            bootstrap_server,
            list,
            describe,
            reset_offsets,
            delete,
            state,
            group,
            topic,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            shift_by,
            execute,
            dry_run,
        } => {
            use cli::consumer_groups as cg;
            let actions = [list, describe, reset_offsets, delete];
            if actions.iter().filter(|a| **a).count() != 1 {
                anyhow::bail!("exactly one of --list, --describe, --reset-offsets, --delete");
            }
            let one_group = || match &group[..] {
                [g] => Ok(g.clone()),
                _ => Err(anyhow::anyhow!("--group is required (once)")),
            };
            if list {
                cg::list(&bootstrap_server, state).await?;
            } else if describe {
                cg::describe(&bootstrap_server, &one_group()?).await?;
            } else if delete {
                if group.is_empty() {
                    anyhow::bail!("--group is required");
                }
                cg::delete(&bootstrap_server, &group).await?;
            } else {
                let to = match (to_earliest, to_latest, to_offset, shift_by) {
                    (true, false, None, None) => cg::ResetTo::Earliest,
                    (false, true, None, None) => cg::ResetTo::Latest,
                    (false, false, Some(o), None) => cg::ResetTo::Offset(o),
                    (false, false, None, Some(d)) => cg::ResetTo::ShiftBy(d),
                    _ => anyhow::bail!(
                        "exactly one of --to-earliest, --to-latest, --to-offset, --shift-by"
                    ),
                };
                if topic.is_none() && !all_topics {
                    anyhow::bail!("one of --topic or --all-topics is required");
                }
                if !execute && !dry_run {
                    eprintln!("WARN: No action will be performed as the --execute option is missing. In a future major release, the default behavior of this command will be to prompt the user before executing the reset rather than doing a dry run. You should add the --dry-run option explicitly if you are scripting this command and want to keep the current default behavior without prompting.");
                }
                cg::reset_offsets(
                    &bootstrap_server,
                    &one_group()?,
                    topic.as_deref(),
                    to,
                    execute,
                )
                .await?;
            }
        }
        Command::Quorum {
            command:
                QuorumCommand::Status {
                    servers,
                    cluster_id,
                },
        } => {
            return cli::quorum::status(&servers, &cluster_id).await;
        }
    }
    Ok(true)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_tool = !matches!(
        cli.command,
        Command::Server { .. } | Command::Coordinator { .. } | Command::Dev { .. }
    );
    let mut open_files = None;
    if !is_tool {
        // Before any setting is read: max.connections defaults to a share of it.
        open_files = Some(runnel::limits::raise_open_files_limit());
        runnel::limits::tune_allocator();
    }
    if is_tool {
        // A tool piped into `head` should stop quietly when the pipe closes,
        // as Kafka's scripts do. (Servers keep SIGPIPE ignored: a client that
        // hangs up must only fail that write.)
        // SAFETY: called before any thread starts; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    init_logging();
    if let Some(limit) = open_files {
        tracing::info!(
            "open files: limit {limit}; log files open at once at most {} (a quarter), \
             client connections at most {} (max.connections default, a half)",
            runnel::storage::file_cache::FileBudget::process_wide().capacity(),
            runnel::limits::default_max_connections()
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
