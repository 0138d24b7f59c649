//! Environment overrides: `PORTCULLIS_SECTION__KEY=value` sets `[section] key`, and
//! `PORTCULLIS_SECTION__KEY_FILE=/path` sets it to the file's contents (for secrets mounted
//! from Kubernetes Secrets). Routes are not overridable this way; they live in the file.

use super::ConfigError;

const PREFIX: &str = "PORTCULLIS_";

/// Applies the overrides; returns, for each key set this way, `(section.key, variable)`,
/// so an error about that key can name the variable the operator actually wrote.
pub(super) fn apply_overrides<I>(
    table: &mut toml::Table,
    env: I,
) -> Result<Vec<(String, String)>, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    // Deterministic order, whatever order the environment came in.
    vars.sort();
    let mut set = Vec::with_capacity(vars.len());
    for (name, raw_value) in vars {
        let rest = &name[PREFIX.len()..];
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        let mut key = key.to_ascii_lowercase();
        if section.is_empty() || key.is_empty() || section == "routes" {
            return Err(ConfigError::invalid(
                name.clone(),
                "environment overrides take the form PORTCULLIS_SECTION__KEY (routes cannot be overridden)",
            ));
        }
        let value = if let Some(stripped) = key.strip_suffix("_file") {
            let contents = std::fs::read_to_string(&raw_value).map_err(|e| {
                ConfigError::invalid(name.clone(), format!("cannot read {raw_value}: {e}"))
            })?;
            key = stripped.to_string();
            toml::Value::String(contents.trim_end_matches(['\r', '\n']).to_string())
        } else {
            parse_scalar(&raw_value)
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(ConfigError::invalid(section, "is not a table"));
        };
        set.push((format!("{section}.{key}"), name));
        section_table.insert(key, value);
    }
    Ok(set)
}

/// An error about a key an environment variable set names the variable first:
/// `PORTCULLIS_SERVER__LISTN (server.listn): unknown field …`.
pub(super) fn name_the_variable(e: ConfigError, set: &[(String, String)]) -> ConfigError {
    match e {
        ConfigError::Invalid { key, message } => {
            // The key itself, a value inside it, or the section the variable made up.
            let var = set.iter().find(|(k, _)| {
                key == *k
                    || key
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with(['.', '[']))
                    || k.strip_prefix(key.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            });
            match var {
                Some((_, var)) => ConfigError::invalid(format!("{var} ({key})"), message),
                None => ConfigError::Invalid { key, message },
            }
        }
        other => other,
    }
}

/// `true`, `42`, `["a", "b"]` are read as TOML; anything else is a plain string.
fn parse_scalar(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(text: &str, env: &[(&str, &str)]) -> Result<toml::Table, ConfigError> {
        let mut t: toml::Table = text.parse().unwrap();
        apply_overrides(
            &mut t,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Ok(t)
    }

    #[test]
    fn override_sets_typed_values_and_strings() {
        let t = apply(
            "[server]\nlisten = \"1.2.3.4:1\"\n",
            &[
                ("PORTCULLIS_SERVER__LISTEN", "0.0.0.0:9000"),
                ("PORTCULLIS_SERVER__MAX_CONNECTIONS", "12"),
                ("PORTCULLIS_COOKIES__SECURE", "false"),
                ("OTHER_VAR", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(t["server"]["listen"].as_str(), Some("0.0.0.0:9000"));
        assert_eq!(t["server"]["max_connections"].as_integer(), Some(12));
        assert_eq!(t["cookies"]["secure"].as_bool(), Some(false));
        assert!(!t.contains_key("other"));
    }

    #[test]
    fn file_variant_reads_the_file_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret-value\n").unwrap();
        let t = apply(
            "",
            &[(
                "PORTCULLIS_TOKENS__HMAC_SECRET_FILE",
                path.to_str().unwrap(),
            )],
        )
        .unwrap();
        assert_eq!(t["tokens"]["hmac_secret"].as_str(), Some("s3cret-value"));
    }

    #[test]
    fn errors_about_overridden_keys_name_the_variable() {
        let load = |env: &[(&str, &str)]| {
            let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            let route =
                "[[routes]]\nname = \"a\"\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:1\"\n";
            crate::config::Config::from_toml(route, env)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let err = load(&[("PORTCULLIS_SERVER__LISTN", "0.0.0.0:1")]);
        assert!(
            err.starts_with("PORTCULLIS_SERVER__LISTN (server.listn): unknown field"),
            "{err}"
        );
        let err = load(&[("PORTCULLIS_SERVER__LISTEN", "nowhere")]);
        assert!(
            err.starts_with("PORTCULLIS_SERVER__LISTEN (server.listen): "),
            "{err}"
        );
        let err = load(&[("PORTCULLIS_SERVR__LISTEN", "0.0.0.0:1")]);
        assert!(err.starts_with("PORTCULLIS_SERVR__LISTEN (servr"), "{err}");
    }

    #[test]
    fn routes_cannot_be_overridden() {
        let err = apply("", &[("PORTCULLIS_ROUTES__X", "1")]).unwrap_err();
        assert!(
            err.to_string().starts_with("PORTCULLIS_ROUTES__X:"),
            "{err}"
        );
    }
}
