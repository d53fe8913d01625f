//! The secrets a deployment runs with, resolved from the environment at start-up.

use crate::config::{Secret, SecretRef, Settings};
use std::collections::BTreeMap;

/// Secrets resolved at start-up.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    pub admin_token: Secret,
    pub webhook_secret: Secret,
    /// `[server] accept_secret`; empty: accept links are keyed from the admin token instead
    /// (see [`Secrets::accept_key`]), never from the webhook secret every receiver holds.
    pub accept_secret: Secret,
    /// Source secrets by name (`meta.app_secret`, `google.key`, `generic.typeform`, …); a
    /// source whose secret is absent answers 503 until it is set.
    pub sources: BTreeMap<String, Secret>,
}

impl Secrets {
    /// The key accept links are signed with.
    pub fn accept_key(&self) -> String {
        match self.accept_secret.expose() {
            "" => crate::notification::hmac_hex(self.admin_token.expose().as_bytes(), b"leadrouter accept links"),
            s => s.to_owned(),
        }
    }

    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(Secret::expose).filter(|s| !s.is_empty())
    }

    /// Only the CRMs' secrets, from `env` (none made up): what `crm resync` and `config
    /// check` need, without the server's own.
    pub fn crm_only(settings: &Settings, env: &dyn Fn(&str) -> Option<String>) -> Secrets {
        let sources = settings
            .crm
            .secret_refs()
            .into_iter()
            .filter_map(|(n, r)| Some((n, Secret::new(r.resolve(env)?))))
            .collect();
        Secrets { sources, ..Secrets::default() }
    }

    /// Resolves every secret the document names from `env`. `[server]` secrets are required
    /// unless `generate` is given (the demo), which then makes up each one that is unset; a
    /// source whose secret is unset is left out, with a warning, and answers 503.
    pub fn resolve(
        settings: &Settings,
        env: &dyn Fn(&str) -> Option<String>,
        generate: Option<&dyn Fn() -> String>,
    ) -> Result<ResolvedSecrets, String> {
        let mut generated = Vec::new();
        let mut one = |name: &str, r: &SecretRef| -> Result<Secret, String> {
            if let Some(v) = r.resolve(env) {
                return Ok(Secret::new(v));
            }
            let SecretRef::Env(var) = r else { return Err(format!("{name} is empty")) };
            match generate {
                Some(make) => {
                    let v = make();
                    generated.push((var.clone(), v.clone()));
                    Ok(Secret::new(v))
                }
                None => Err(format!("{name} reads the environment variable {var}, which is not set")),
            }
        };
        let admin_token = one("[server] admin_token", &settings.server.admin_token)?;
        let webhook_secret = one("[server] webhook_secret", &settings.server.webhook_secret)?;
        let accept_secret = match &settings.server.accept_secret {
            Some(r) => one("[server] accept_secret", r)?,
            None => Secret::default(),
        };
        let mut sources = BTreeMap::new();
        let mut warnings = Vec::new();
        for (source, r) in settings.source_secret_refs() {
            match one(&source, r) {
                Ok(s) => {
                    sources.insert(source, s);
                }
                Err(e) => warnings.push(format!("{e}; that source is off until it is set")),
            }
        }
        Ok(ResolvedSecrets {
            secrets: Secrets { admin_token, webhook_secret, accept_secret, sources },
            generated,
            warnings,
        })
    }
}

/// Secrets, and what resolving them made up or left out.
pub struct ResolvedSecrets {
    pub secrets: Secrets,
    /// (variable, value) of each secret generated for a demo run.
    pub generated: Vec<(String, String)>,
    pub warnings: Vec<String>,
}
