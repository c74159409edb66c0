//! The `registrator` binary: parses the command line, sets up logging and runs the daemon of
//! the `registrator` library (its crate documentation has the map of the code).

use std::process::ExitCode;

use registrator::cli::{self, Command};
use registrator::daemon::{self, Fail};

const USAGE: &str = "Usage: registrator [options] <registry URI>  (registrator -help for more)";

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => c,
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("registrator {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(usage) => {
            eprintln!("registrator: {usage}");
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    init_logging();
    match daemon::run(*config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Setup(e)) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(e)) => {
            eprintln!("registrator: {e}");
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// env_logger with `RUST_LOG` (default info), except that the HTTP client crates never log
/// below info: their debug and trace lines print request headers, the Consul token among them.
fn init_logging() {
    struct Guarded(env_logger::Logger);
    impl log::Log for Guarded {
        fn enabled(&self, m: &log::Metadata) -> bool {
            self.0.enabled(m) && !(m.target().starts_with("ureq") && m.level() > log::Level::Info)
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                self.0.log(r);
            }
        }
        fn flush(&self) {
            self.0.flush();
        }
    }
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(Guarded(logger))).is_ok() {
        log::set_max_level(max);
    }
}
