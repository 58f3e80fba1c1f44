//! The edge setups, each on loopback ports with its own data directory: regapp with its TLS edge
//! and Basic Auth (one process), and Debian's nginx (TLS 1.2/1.3, http2, `auth_basic` with a
//! bcrypt htpasswd of cost 10, `client_max_body_size 0`, `proxy_request_buffering off`) proxying
//! to a docker-registry. Both use the same credentials, hashed by `htpasswd -B -C 10`.

use std::fs::{self, File};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::server::{free_port, path_str, toml_string, Kind, Server};
use crate::tls::Access;
use crate::BenchResult;

const USER: &str = "bench";
const PASSWORD: &str = "bench-password";
const LISTENING: &str = "regapp listening on https://";

fn access(ca: &Path) -> Access {
    Access {
        ca: Some(ca.to_owned()),
        basic: Some((USER.to_owned(), PASSWORD.to_owned())),
    }
}

/// Runs `command`, failing with its output unless it exits 0.
fn run(command: &mut Command) -> BenchResult<()> {
    let output = command.stdin(Stdio::null()).output().map_err(|e| {
        format!(
            "cannot run {:?} ({e}); `apt-get install apache2-utils openssl nginx`",
            command.get_program()
        )
    })?;
    if !output.status.success() {
        return Err(format!(
            "{:?} failed: {}{}",
            command.get_program(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

/// A bcrypt (cost 10) htpasswd file with the bench's one user.
fn htpasswd(path: &Path) -> BenchResult<()> {
    run(Command::new("htpasswd")
        .args(["-B", "-C", "10", "-b", "-c"])
        .arg(path)
        .args([USER, PASSWORD]))
}

/// Three distinct free loopback ports (held together so that they differ).
fn free_ports() -> BenchResult<[u16; 3]> {
    let held: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    Ok([
        held[0].local_addr()?.port(),
        held[1].local_addr()?.port(),
        held[2].local_addr()?.port(),
    ])
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// regapp with `[edge]`, `[tls] mode = "self-signed"` and `[auth]`; clients go through
/// `https://localhost:PORT` trusting the CA regapp writes.
pub fn start_regapp(dir: &Path, regapp: &Path) -> BenchResult<Server> {
    start_regapp_with(dir, regapp, "")
}

/// [`start_regapp`] with more `[edge]` keys.
pub fn start_regapp_with(dir: &Path, regapp: &Path, edge_keys: &str) -> BenchResult<Server> {
    let root = dir.join("data");
    let tls = dir.join("tls");
    fs::create_dir_all(&root)?;
    let users = dir.join("htpasswd");
    htpasswd(&users)?;
    let [engine, https, http] = free_ports()?;
    let config = dir.join("regapp.toml");
    let text = format!(
        "[storage]\nroot = {}\n\n[engine]\nlisten = \"127.0.0.1:{engine}\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n\
         [edge]\nhostname = \"localhost\"\nhttps_listen = \"127.0.0.1:{https}\"\n\
         http_listen = \"127.0.0.1:{http}\"\nshutdown_grace = \"1s\"\n{edge_keys}\n\
         [tls]\nmode = \"self-signed\"\nstate_dir = {}\n\n\
         [auth]\nhtpasswd = {}\nrealm = \"bench\"\n",
        toml_string(path_str(&root)?),
        toml_string(path_str(&tls)?),
        toml_string(path_str(&users)?),
    );
    fs::write(&config, text)?;
    let log = dir.join("server.log");
    let stdout = dir.join("stdout.log");
    let child = Command::new(regapp)
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("REGAPP_LOG", "error")
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&log)?)
        .spawn()
        .map_err(|e| format!("cannot start {} ({e})", regapp.display()))?;
    let mut server = Server::spawned(Kind::RegappEdge, child, log);
    server.wait_for(|| {
        fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains(LISTENING)
            .then_some(())
    })?;
    let ca = tls.join("ca.crt");
    server.wait_for(|| (accepts(https) && ca.is_file()).then_some(()))?;
    server.base = format!("https://localhost:{https}");
    server.access = access(&ca);
    Ok(server)
}

/// A CA and a certificate for `localhost` / 127.0.0.1 signed by it, with openssl.
fn certificates(tls: &Path) -> BenchResult<()> {
    fs::create_dir_all(tls)?;
    let p = |name: &str| tls.join(name);
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=regapp bench CA", "-keyout"])
        .arg(p("ca.key"))
        .arg("-out")
        .arg(p("ca.crt")))?;
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(p("server.key"))
        .arg("-out")
        .arg(p("server.csr")))?;
    fs::write(
        p("ext.cnf"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n",
    )?;
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(p("server.csr"))
        .arg("-CA")
        .arg(p("ca.crt"))
        .arg("-CAkey")
        .arg(p("ca.key"))
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(p("ext.cnf"))
        .arg("-out")
        .arg(p("server.crt")))
}

/// Debian's nginx in front of a docker-registry (in `dir/registry`), the seeds' setup.
pub fn start_nginx(dir: &Path, regapp: &Path) -> BenchResult<Server> {
    let registry = Server::start(Kind::DockerRegistry, &dir.join("registry"), regapp)?;
    let upstream = registry
        .base
        .strip_prefix("http://")
        .ok_or("docker-registry's address is not http://")?
        .to_owned();
    let tls = dir.join("tls");
    certificates(&tls)?;
    let users = dir.join("htpasswd");
    htpasswd(&users)?;
    fs::create_dir_all(dir.join("temp"))?;
    let port = free_port()?;
    let d = path_str(dir)?;
    // keepalive_requests: nginx's default (1,000) ends an h2 connection with GOAWAY mid-phase,
    // which the bench's hyper client reports as an error instead of retrying as Go does; a
    // connection that lasts the whole run also spares nginx new handshakes.
    // Started as root, nginx would run its workers as nobody, who cannot read the bench's
    // private directory.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let conf = format!(
        "{user}worker_processes auto;\npid {d}/nginx.pid;\nerror_log {d}/error.log error;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
           access_log off;\n\
           keepalive_requests 1000000;\n\
           client_body_temp_path {d}/temp/body;\n\
           proxy_temp_path {d}/temp/proxy;\n\
           fastcgi_temp_path {d}/temp/fastcgi;\n\
           uwsgi_temp_path {d}/temp/uwsgi;\n\
           scgi_temp_path {d}/temp/scgi;\n\
           server {{\n\
             listen 127.0.0.1:{port} ssl http2;\n\
             server_name localhost;\n\
             ssl_certificate {d}/tls/server.crt;\n\
             ssl_certificate_key {d}/tls/server.key;\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n\
             client_max_body_size 0;\n\
             chunked_transfer_encoding on;\n\
             location /v2/ {{\n\
               auth_basic \"bench\";\n\
               auth_basic_user_file {d}/htpasswd;\n\
               add_header Docker-Distribution-Api-Version registry/2.0 always;\n\
               proxy_pass http://{upstream};\n\
               proxy_set_header Host $http_host;\n\
               proxy_set_header X-Real-IP $remote_addr;\n\
               proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n\
               proxy_read_timeout 900;\n\
               proxy_request_buffering off;\n\
             }}\n\
           }}\n\
         }}\n"
    );
    let config = dir.join("nginx.conf");
    fs::write(&config, conf)?;
    let log = dir.join("server.log");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&config)
        .args(["-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout.log"))?)
        .stderr(File::create(&log)?)
        .spawn()
        .map_err(|e| {
            format!("cannot start nginx ({e}); install it with `apt-get install nginx`")
        })?;
    let mut server = Server::spawned(Kind::Nginx, child, log);
    server.inner = vec![registry];
    server.wait_for(|| accepts(port).then_some(()))?;
    server.base = format!("https://localhost:{port}");
    server.access = access(&tls.join("ca.crt"));
    Ok(server)
}
