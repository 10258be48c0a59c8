//! `cete scan [PREFIX]`: list the keys under a prefix with their values, one JSON object per
//! line (`{"key":"k","value":"v"}`), in key order, ready for `jq`. `--limit N` lists a page
//! (and says on stderr how to ask for the next), `--start-after K` starts after a key,
//! `--keys-only` leaves the values out, `--count` prints only `{"count":N}`.

use std::process::ExitCode;

use cete_actors::wire::value_json;
use cete_proto::kvs::{ScanRequest, ScanResponse};
use serde_json::{Map, Value};

use super::dial::status_error;
use super::{emit, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// The key prefix; every key when omitted
    #[arg(default_value = "")]
    pub prefix: String,
    /// At most this many keys
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Only keys after this one (the last key of the page before)
    #[arg(long, value_name = "KEY")]
    pub start_after: Option<String>,
    /// Leave the values out
    #[arg(long)]
    pub keys_only: bool,
    /// Print only how many keys there are under the prefix
    #[arg(long)]
    pub count: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let request = ScanRequest {
        prefix: args.prefix,
        limit: args.limit.unwrap_or(0) as i64,
        start_after: args.start_after.unwrap_or_default(),
        keys_only: args.keys_only,
        count_only: args.count,
    };
    let response = client.scan(request).await.map_err(status_error)?.into_inner();
    if args.count {
        emit(format!("{}\n", serde_json::json!({ "count": response.count })).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let next = response.more.then(|| response.pairs.last().map(|pair| pair.key.clone())).flatten();
    let mut lines = String::new();
    for mut line in lines_of(response) {
        if args.keys_only {
            if let Some(object) = line.as_object_mut() {
                object.remove("value");
            }
        }
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    emit(lines.as_bytes())?;
    if let Some(last) = next {
        eprintln!("more keys follow: the next page is --start-after {}", serde_json::Value::String(last));
    }
    Ok(ExitCode::SUCCESS)
}

/// One JSON object per entry; a value that is not UTF-8 goes as `"value_base64"`, byte-exact
/// ([`value_json`]). A server that fills only `values` (field 1, the Go server's shape) still
/// gets its values listed, without keys.
fn lines_of(response: ScanResponse) -> Vec<Value> {
    if response.pairs.is_empty() {
        return response
            .values
            .iter()
            .map(|value| {
                let mut line = Map::new();
                value_json::insert_value(&mut line, value);
                Value::Object(line)
            })
            .collect();
    }
    response.pairs.iter().map(|pair| value_json::key_value(&pair.key, &pair.value)).collect()
}

#[cfg(test)]
mod tests {
    use cete_proto::kvs::KeyValuePair;

    use super::*;

    #[test]
    fn pairs_become_key_value_lines() {
        let response = ScanResponse {
            values: vec![b"v1".to_vec().into()],
            pairs: vec![KeyValuePair { key: "k1".into(), value: b"v1".to_vec().into(), ..Default::default() }],
            ..Default::default()
        };
        let lines: Vec<String> = lines_of(response).iter().map(Value::to_string).collect();
        assert_eq!(lines, [r#"{"key":"k1","value":"v1"}"#]);
    }

    #[test]
    fn values_alone_are_still_listed() {
        let response = ScanResponse { values: vec![b"v1".to_vec().into()], ..Default::default() };
        assert_eq!(lines_of(response)[0].to_string(), r#"{"value":"v1"}"#);
        let binary = ScanResponse { values: vec![vec![0xff].into()], ..Default::default() };
        assert_eq!(lines_of(binary)[0].to_string(), r#"{"value_base64":"/w=="}"#);
    }
}
