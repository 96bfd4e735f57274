//! `runnel`: the Runnel node binary.
//!
//! For now it only prints its usage; the runtime, the Kafka front end and
//! the commands (`server`, `coordinator`, `dev`, `topics`, ...) arrive with
//! the networked-node issue.

const USAGE: &str = "\
runnel — a replicated, partitioned commit log that speaks Kafka's protocol

USAGE:
    runnel <COMMAND> [OPTIONS]

COMMANDS (planned; not available in this build yet):
    server <server.properties>    run a broker and/or coordinator
    coordinator <zoo.cfg>         run a coordinator from a ZooKeeper-style config
    dev                           start a local 3-node cluster
    topics, console-producer, console-consumer, consumer-groups, quorum

The protocol core (runnel-model) is complete and model-checked:
see specs/replication.md.
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    print!("{USAGE}");
    let asked_for_help = args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help");
    if !asked_for_help {
        eprintln!("runnel: unknown command '{}'", args[0]);
        std::process::exit(2);
    }
}
