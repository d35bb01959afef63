//! `sluiced --far-end-setup/-check/-repair/-remove DEST --config FILE --tunnel NAME`: the
//! far end of one config tunnel, set up, checked, repaired or taken down over ssh by the
//! engine's far_end module, printing one line per step; exit status 0 only if every step
//! succeeded.

use std::process::ExitCode;

use sluice_engine::{
    Config, FAR_END_CONNECT_TIMEOUT, FarEndKey, FarEndRequest, FarEndStepOutcome, FarEndStepReport,
    LocalSluiced, SshClient, run_far_end,
};

use crate::cli::FarEndOptions;

pub fn run(options: &FarEndOptions) -> ExitCode {
    match prepare(options) {
        Ok(request) => {
            let mut print = |report: FarEndStepReport| {
                if !matches!(report.outcome, FarEndStepOutcome::Running) {
                    println!("{report}");
                }
            };
            match run_far_end(&request, &mut print) {
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

fn prepare(options: &FarEndOptions) -> Result<FarEndRequest, String> {
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
    let key = if options.action.needs_key() {
        Some(
            FarEndKey::load(&tunnel.key, None)
                .map_err(|e| format!("tunnel {:?}: {e}", tunnel.name))?,
        )
    } else {
        None
    };
    // Where the far end forwards to (or listens), and whether it waits for its first
    // connection: as given, else as the app recorded it at set-up, so a repair puts back
    // the same far end.
    let far_address = options
        .service
        .clone()
        .or_else(|| tunnel.far_end.as_ref().map(|r| r.far_address.clone()));
    let on_first_connection = options.on_first_connection
        || tunnel
            .far_end
            .as_ref()
            .is_some_and(|r| r.on_first_connection);
    // During a rotation the app started, a repair keeps the old key on the far end.
    let previous_key = match tunnel
        .far_end
        .as_ref()
        .and_then(|r| r.previous_key.as_ref())
    {
        Some(previous) if options.action.sets_up() => Some(
            FarEndKey::load(previous, None)
                .map_err(|e| format!("tunnel {:?}'s previous key: {e}", tunnel.name))?,
        ),
        _ => None,
    };
    let ssh = SshClient::from_env(&options.destination, FAR_END_CONNECT_TIMEOUT.as_secs())
        .map_err(|e| e.to_string())?;
    Ok(FarEndRequest {
        action: options.action,
        tunnel,
        far_address,
        this_host: sluice_engine::host_name(),
        key,
        ssh,
        on_first_connection,
        previous_key,
        // This very program, for a far end that needs sluiced and has none.
        local_sluiced: options
            .action
            .sets_up()
            .then(LocalSluiced::beside_this_program)
            .flatten(),
    })
}
