//! `runnel configs`: Kafka's `kafka-configs.sh` for topics: `--describe`
//! (a topic's dynamic configs, Kafka's layout) and `--alter` with
//! `--add-config k=v,k2=v2` and `--delete-config k,k2` (sent as one
//! IncrementalAlterConfigs, so they commit together or not at all).

use crate::client::Client;
use anyhow::{bail, Result};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

pub struct ConfigsArgs {
    pub bootstrap: String,
    pub entity_type: String,
    pub entity_name: String,
    pub describe: bool,
    pub alter: bool,
    pub add_config: Option<String>,
    pub delete_config: Option<String>,
}

const TOPIC: i8 = 2;

pub async fn run(a: ConfigsArgs) -> Result<()> {
    if a.describe == a.alter {
        bail!("exactly one of --describe, --alter is required");
    }
    if !matches!(a.entity_type.as_str(), "topics" | "topic") {
        bail!("--entity-type {}: only topics have dynamic configs here (broker configs are set in server.properties)", a.entity_type);
    }
    let mut client = Client::connect(&a.bootstrap).await?;
    let name = StrBytes::from_string(a.entity_name.clone());
    if a.describe {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC)
                .with_resource_name(name)
                .with_configuration_keys(None),
        ]);
        let response = client.call_any(&request, 1).await?;
        let Some(result) = response.results.first() else {
            bail!("no answer for topic {}", a.entity_name);
        };
        if result.error_code != 0 {
            bail!(
                "{} (error {})",
                result.error_message.as_deref().unwrap_or(""),
                result.error_code
            );
        }
        println!("Dynamic configs for topic {} are:", a.entity_name);
        // The topic's own configs (DYNAMIC_TOPIC_CONFIG), as kafka-configs.sh.
        for c in result.configs.iter().filter(|c| c.config_source == 1) {
            let value = c.value.as_deref().unwrap_or("");
            println!(
                "  {}={value} sensitive=false synonyms={{DYNAMIC_TOPIC_CONFIG:{}={value}}}",
                c.name, c.name
            );
        }
        return Ok(());
    }
    let configs = alterations(a.add_config.as_deref(), a.delete_config.as_deref())?;
    if configs.is_empty() {
        bail!("--alter needs --add-config or --delete-config");
    }
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(name)
            .with_configs(configs),
    ]);
    let response = client.call_any(&request, 0).await?;
    match response.responses.first() {
        Some(r) if r.error_code == 0 => {
            println!("Completed updating config for topic {}.", a.entity_name);
            Ok(())
        }
        Some(r) => bail!(
            "Error while executing config command: {} (error {})",
            r.error_message.as_deref().unwrap_or(""),
            r.error_code
        ),
        None => bail!("no answer for topic {}", a.entity_name),
    }
}

/// `--add-config a=1,b=2` (SET) and `--delete-config a,b` (DELETE).
fn alterations(add: Option<&str>, delete: Option<&str>) -> Result<Vec<AlterableConfig>> {
    let mut out = Vec::new();
    for pair in add
        .unwrap_or("")
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("{pair:?}: expected key=value");
        };
        out.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.trim().to_string()))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(v.trim().to_string()))),
        );
    }
    for k in delete
        .unwrap_or("")
        .split(',')
        .filter(|k| !k.trim().is_empty())
    {
        out.push(
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.trim().to_string()))
                .with_config_operation(1),
        );
    }
    Ok(out)
}
