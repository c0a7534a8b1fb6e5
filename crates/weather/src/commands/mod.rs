//! The subcommands' bodies, each returning its exit code: one module per
//! subcommand, and here what they share.

use std::{path::PathBuf, process::ExitCode};

use clap::ValueEnum;

use mesh::{
    Manifests, Mesh,
    analyze::{Level, analyze},
    load_paths,
};

fn load(paths: &[PathBuf]) -> Result<Manifests, ExitCode> {
    if paths.is_empty() {
        eprintln!("error: no manifests: pass -f PATH (files or folders, like kubectl apply -f)");
        return Err(ExitCode::from(2));
    }
    load_paths(paths).map_err(|errors| {
        for e in errors {
            eprintln!("error: {e}");
        }
        ExitCode::FAILURE
    })
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// `weather keygen`: a new P-256 private key (PKCS#8 PEM) on standard output,
/// for the Secret frontend-jwt-key.
pub fn keygen() -> ExitCode {
    match frontend::token::generate_pem() {
        Ok(pem) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: could not make a key: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn check(paths: &[PathBuf]) -> ExitCode {
    let m = match load(paths) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let messages = analyze(&m, &Mesh::compile(&m));
    for msg in &messages {
        println!("{msg}");
    }
    for n in &m.notes {
        println!("Info: {n}");
    }
    let errors = messages.iter().filter(|m| m.level == Level::Error).count();
    let warnings = messages.len() - errors;
    let what: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if errors == 0 {
        println!(
            "✔ No errors found when analyzing {} ({warnings} warnings)",
            what.join(", ")
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "✘ {errors} errors, {warnings} warnings in {}",
            what.join(", ")
        );
        ExitCode::FAILURE
    }
}

mod release;
mod route;
mod stage;
mod up;
mod verify;

pub use release::{ReleaseArgs, release};
pub use route::{RouteArgs, route};
pub use stage::stage;
pub use up::{UpArgs, up};
pub use verify::{VerifyArgs, verify};
