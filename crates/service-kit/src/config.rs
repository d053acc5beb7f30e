//! Layered typed configuration.
//!
//! A service's settings are a struct with `#[serde(default, deny_unknown_fields)]`, so the code's
//! `Default` supplies every value a layer leaves out. The layers, later ones winning:
//!
//! 1. the defaults in code;
//! 2. a TOML file, if given (`deploy/config/<service>.toml` in deployments);
//! 3. environment variables `AWX_<SERVICE>__<SECTION>__<FIELD>` (for example
//!    `AWX_GATEWAY__HTTP__ADDR=0.0.0.0:8080`).
//!
//! Units are part of field names (`timeout_ms`, `ttl_seconds`) and become `Duration` once, where
//! the settings are used. After loading, [`Validate::validate`] checks rules across fields.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::de::DeserializeOwned;

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a value has the wrong type or an unknown key; the message
    /// names the key and the layer it came from.
    #[error("configuration: {0}")]
    Invalid(String),
    /// The values are individually fine but break a rule.
    #[error("configuration is invalid: {0}")]
    Rule(String),
}

/// Rules across fields, checked after loading.
pub trait Validate {
    /// `Err` with a message naming the fields, when a rule is broken.
    fn validate(&self) -> Result<(), String>;
}

/// The environment prefix of a service: `AWX_<SERVICE>__`.
pub fn env_prefix(service: &str) -> String {
    format!("AWX_{}__", service.to_ascii_uppercase().replace('-', "_"))
}

/// Loads the settings of `service` from the defaults, the optional `file`, and the environment.
pub fn load<T: DeserializeOwned + Validate>(
    service: &str,
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    let mut figment = Figment::new();
    if let Some(file) = file {
        if !file.is_file() {
            return Err(ConfigError::Invalid(format!(
                "config file {} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment = figment.merge(Env::prefixed(&env_prefix(service)).split("__"));
    let settings: T = figment.extract().map_err(|error| ConfigError::Invalid(error.to_string()))?;
    settings.validate().map_err(ConfigError::Rule)?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        http: Http,
        name: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Http {
        addr: String,
        timeout_ms: u64,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self { http: Http::default(), name: "default".into() }
        }
    }

    impl Default for Http {
        fn default() -> Self {
            Self { addr: "127.0.0.1:8080".into(), timeout_ms: 1000 }
        }
    }

    impl Validate for Settings {
        fn validate(&self) -> Result<(), String> {
            if self.http.timeout_ms == 0 {
                Err("http.timeout_ms must be positive".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    #[allow(clippy::result_large_err, reason = "figment's Jail fixes the closure's error type")]
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("svc.toml", "name = \"from-file\"\n[http]\ntimeout_ms = 5\n")?;
            let settings: Settings = load("kit-test", None).map_err(|e| e.to_string())?;
            assert_eq!(settings, Settings::default());

            let settings: Settings =
                load("kit-test", Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.name, "from-file");
            assert_eq!(settings.http.timeout_ms, 5);
            assert_eq!(settings.http.addr, "127.0.0.1:8080");

            jail.set_env("AWX_KIT_TEST__HTTP__TIMEOUT_MS", "7");
            let settings: Settings =
                load("kit-test", Some(Path::new("svc.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.http.timeout_ms, 7);

            jail.set_env("AWX_KIT_TEST__HTTP__TIMEOUT_MS", "soon");
            let error = load::<Settings>("kit-test", None).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("timeout_ms"), "{error}");

            jail.set_env("AWX_KIT_TEST__HTTP__TIMEOUT_MS", "0");
            let error = load::<Settings>("kit-test", None).unwrap_err();
            assert!(
                matches!(error, ConfigError::Rule(ref m) if m.contains("timeout_ms")),
                "{error}"
            );

            jail.set_env("AWX_KIT_TEST__HTTP__TIMEOUT_MS", "7");
            jail.set_env("AWX_KIT_TEST__HTTP__TYPO", "1");
            let error = load::<Settings>("kit-test", None).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("typo"), "{error}");
            Ok(())
        });
    }
}
