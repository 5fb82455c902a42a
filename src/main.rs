//! The `filebridge` binary: everything lives in the library; see `cli::run`.

fn main() -> std::process::ExitCode {
    filebridge::cli::run()
}
