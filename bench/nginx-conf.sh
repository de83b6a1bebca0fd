# shellcheck shell=bash
# nginx as a plain streaming reverse proxy: the configuration bench/run.sh measures against,
# and bench/callgrind.sh counts. Sourced; write_nginx_conf reads NGX_DIR, SUT_WORKERS, UP_PORT
# and NGX_PORT, and UP_CA: when set, the upstream is reached over TLS, its certificate (for
# `localhost`) checked against that file, sessions resumed, connections kept as over HTTP.

write_nginx_conf() {
  mkdir -p "$NGX_DIR/tmp"
  chmod 777 "$NGX_DIR/tmp"
  local nofile scheme=http tls=""
  nofile=$(ulimit -Hn)
  if [[ -n ${UP_CA:-} ]]; then
    scheme=https
    tls="proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $UP_CA;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;"
  fi
  cat >"$NGX_DIR/nginx.conf" <<EOF
# Written by bench/nginx-conf.sh: nginx as a plain streaming reverse proxy for comparison.
worker_processes $SUT_WORKERS;
worker_rlimit_nofile $nofile;
pid $NGX_DIR/nginx.pid;
error_log $NGX_DIR/error.log warn;
events {
    worker_connections $nofile;
}
http {
    access_log off;
    client_body_temp_path $NGX_DIR/tmp/body;
    proxy_temp_path $NGX_DIR/tmp/proxy;
    fastcgi_temp_path $NGX_DIR/tmp/fastcgi;
    uwsgi_temp_path $NGX_DIR/tmp/uwsgi;
    scgi_temp_path $NGX_DIR/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    tcp_nodelay on;
    upstream llm {
        server 127.0.0.1:$UP_PORT;
        keepalive 512;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        location / {
            proxy_pass $scheme://llm;
            $tls
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
}
