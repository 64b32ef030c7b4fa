//! `palisade completions SHELL`, `palisade man` and `palisade schema`: shell completions and
//! man pages generated from the command-line definition, and the config's JSON Schema from
//! the config model, so that none of them drifts from what the binary does.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

/// Prints the completion script of `shell` for the command `C`.
pub fn completions<C: CommandFactory>(shell: clap_complete::Shell) -> ExitCode {
    use std::io::Write as _;
    let mut cmd = C::command();
    let name = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    // a closed pipe (`| head`) is the reader's choice, not an error worth a message
    let _ = std::io::stdout().write_all(&script);
    ExitCode::SUCCESS
}

/// Writes `palisade.1` and one page per command (`palisade-audit.1`, …) to `out`.
pub fn man<C: CommandFactory>(out: &Path) -> ExitCode {
    let written = std::fs::create_dir_all(out)
        .map_err(|e| e.to_string())
        .and_then(|()| clap_mangen::generate_to(C::command(), out).map_err(|e| e.to_string()));
    match written {
        Ok(()) => {
            let mut pages: Vec<String> = std::fs::read_dir(out)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".1"))
                .collect();
            pages.sort();
            println!(
                "palisade man: {} pages in {} (read one with `man -l {}/palisade.1`)",
                pages.len(),
                out.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade man: cannot write to {}: {e}", out.display());
            ExitCode::from(2)
        }
    }
}

/// Prints the JSON Schema of the config file.
pub fn schema() -> ExitCode {
    use std::io::Write as _;
    let text =
        serde_json::to_string_pretty(&palisade_config::schema::json_schema()).unwrap_or_default();
    let _ = writeln!(std::io::stdout(), "{text}");
    ExitCode::SUCCESS
}
