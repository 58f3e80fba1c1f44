//! `regapp user add|passwd|del|list`: finds the htpasswd file (`--file`, or `[auth] htpasswd` in
//! the configuration), reads a password (a prompt without echo, or `--password-stdin`), and
//! edits the file through `auth::htpasswd_file`. The running server needs no signal: its watcher
//! sees the rename within 2 s.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::auth::htpasswd_file::{check_user_name, HtpasswdFile};
use crate::auth::password::PasswordHash;
use crate::cli::{HtpasswdArg, NewPassword, UserArgs, UserCommand};
use crate::config::Settings;

pub fn run(args: UserArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("regapp user: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: UserArgs) -> Result<(), String> {
    let path = htpasswd_path(&args.file)?;
    let mut file = HtpasswdFile::open(&path).map_err(|e| e.to_string())?;
    match args.command {
        UserCommand::List => {
            list(&file);
            return Ok(());
        }
        UserCommand::Add(new) => {
            check_user_name(&new.name).map_err(|e| e.to_string())?;
            if file.contains(&new.name) {
                return Err(format!(
                    "user {:?} already exists in {} (use `regapp user passwd`)",
                    new.name,
                    file.path().display()
                ));
            }
            let hash = new_hash(&new)?;
            file.set(&new.name, &hash).map_err(|e| e.to_string())?;
        }
        UserCommand::Passwd(new) => {
            if !file.contains(&new.name) {
                return Err(format!(
                    "no user {:?} in {} (use `regapp user add`)",
                    new.name,
                    path.display()
                ));
            }
            let hash = new_hash(&new)?;
            file.set(&new.name, &hash).map_err(|e| e.to_string())?;
        }
        UserCommand::Del { name } => {
            if !file.remove(&name) {
                return Err(format!("no user {name:?} in {}", path.display()));
            }
        }
    }
    let created = !file.exists();
    file.save().map_err(|e| e.to_string())?;
    println!("{}: saved", file.path().display());
    if created {
        println!(
            "created with mode 0640 and the directory's group: the server's user must be able to read it"
        );
    }
    // The edit itself writes only valid lines, but other lines may already be broken; the
    // server keeps its last good users until they are fixed, so say so now.
    if let Err(e) = file.parsed() {
        eprintln!("warning: the server will not load this file until it is fixed: {e}");
    }
    Ok(())
}

/// `--file`, or the configuration's `[auth] htpasswd` (which needs an `[edge]` section).
fn htpasswd_path(arg: &HtpasswdArg) -> Result<PathBuf, String> {
    if let Some(file) = &arg.file {
        return Ok(file.clone());
    }
    let settings = Settings::load(&arg.config).map_err(|errors| errors.to_string())?;
    match settings.edge {
        Some(edge) => Ok(edge.auth.htpasswd),
        None => Err(format!(
            "{} has no [edge] section, so no [auth] htpasswd; name the file with --file PATH",
            arg.config.display()
        )),
    }
}

fn list(file: &HtpasswdFile) {
    match file.parsed() {
        Ok(parsed) => {
            let mut users: Vec<_> = parsed.users().iter().collect();
            users.sort_by(|a, b| a.0.cmp(b.0));
            for (name, hash) in users {
                println!("{name}\t{}", scheme(hash));
            }
            for refused in parsed.refused() {
                println!(
                    "{}\trefused: {} (line {}; set a new password with `regapp user passwd`)",
                    refused.user, refused.reason, refused.line
                );
            }
        }
        Err(e) => eprintln!("{}: {e}", file.path().display()),
    }
}

fn scheme(hash: &PasswordHash) -> String {
    match hash.shape() {
        crate::auth::password::HashShape::Bcrypt { cost } => format!("bcrypt (cost {cost})"),
        crate::auth::password::HashShape::Argon2 {
            algorithm, params, ..
        } => format!(
            "{algorithm} (m={}, t={}, p={})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ),
    }
}

fn new_hash(new: &NewPassword) -> Result<PasswordHash, String> {
    let password = if new.password_stdin {
        password_from_stdin()?
    } else {
        let first = prompt(&format!("New password for {}: ", new.name))?;
        let again = prompt("Retype the password: ")?;
        if first != again {
            return Err("the passwords do not match; nothing changed".to_owned());
        }
        first
    };
    if password.is_empty() {
        return Err("the password is empty; nothing changed".to_owned());
    }
    let hashed = if new.argon2 {
        PasswordHash::new_argon2id(&password)
    } else {
        PasswordHash::new_bcrypt(&password, new.cost)
    };
    hashed.map_err(|e| e.to_string())
}

/// The first line of standard input, without its line ending (as `docker login
/// --password-stdin` reads it).
fn password_from_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks on the terminal (`/dev/tty`, so redirected output does not swallow the question) with
/// echo off, restoring the terminal's settings afterwards.
fn prompt(question: &str) -> Result<String, String> {
    use std::os::fd::AsRawFd as _;
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|e| format!("no terminal to ask for the password ({e}); use --password-stdin"))?;
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor (checked below).
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for as long as `tty` lives; `saved` is a valid termios to fill.
    if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
        return Err(format!(
            "cannot switch off the terminal's echo ({}); use --password-stdin",
            std::io::Error::last_os_error()
        ));
    }
    let mut quiet = saved;
    quiet.c_lflag &= !libc::ECHO;
    quiet.c_lflag |= libc::ECHONL;
    // Echo goes off before the question appears, so nothing typed after it is ever shown.
    // SAFETY: as above; `quiet` is a copy of the terminal's own settings.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    let mut line = String::new();
    let read = tty
        .write_all(question.as_bytes())
        .and_then(|()| tty.flush())
        .and_then(|()| std::io::BufReader::new(&tty).read_line(&mut line));
    // SAFETY: as above; restores what tcgetattr returned, whatever the read did.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
