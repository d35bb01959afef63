//! `sluiced --far-end-setup/-check/-remove DEST --config FILE --tunnel NAME`: the far end
//! of one config tunnel, set up, checked or taken down over ssh by the engine's far_end
//! module, printing one line per step; exit status 0 only if every step succeeded.

use std::process::ExitCode;

use sluice_engine::Config;
use sluice_engine::far_end::{self, Action, KeyBytes, Request, SshClient, StepOutcome};

use crate::cli::FarEndOptions;

pub fn run(options: &FarEndOptions) -> ExitCode {
    match prepare(options) {
        Ok(request) => {
            let mut print = |report: far_end::StepReport| {
                if !matches!(report.outcome, StepOutcome::Running) {
                    println!("{report}");
                }
            };
            match far_end::run(&request, &mut print) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(message) => {
            eprintln!("sluiced: {message}");
            ExitCode::FAILURE
        }
    }
}

fn prepare(options: &FarEndOptions) -> Result<Request, String> {
    let config = Config::load(&options.config).map_err(|e| e.to_string())?;
    let tunnel = config.tunnel(&options.tunnel).cloned().ok_or_else(|| {
        let names: Vec<String> = config
            .tunnels
            .iter()
            .map(|t| format!("{:?}", t.name))
            .collect();
        format!(
            "config file {} has no tunnel named {:?}; its tunnels: {}",
            options.config.display(),
            options.tunnel,
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )
    })?;
    // Taking the far end down needs no key (it may be lost already). A Keychain key is
    // refused with a message: sluiced runs on servers without the desktop keychain.
    let key = if options.action == Action::Remove {
        None
    } else {
        Some(
            KeyBytes::load(&tunnel.key, None)
                .map_err(|e| format!("tunnel {:?}: {e}", tunnel.name))?,
        )
    };
    let ssh = SshClient::from_env(
        &options.destination,
        far_end::DEFAULT_CONNECT_TIMEOUT.as_secs(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Request {
        action: options.action,
        tunnel,
        far_address: options.service.clone(),
        this_host: sluice_engine::host_name(),
        key,
        ssh,
    })
}
