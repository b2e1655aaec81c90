//! Dockerfile lint: every rule on a Dockerfile written to trip it, with exact lines; a good
//! multi-stage Dockerfile with no finding.
#![allow(clippy::unwrap_used, reason = "tests")]

use rampart_scan::lint::lint_dockerfile;

const BAD: &str = r#"# syntax=docker/dockerfile:1
FROM ubuntu
MAINTAINER someone@example.com
ARG NPM_TOKEN
ENV DB_PASSWORD=hunter2hunter2 \
    APP_ENV=production
ADD https://example.com/tool.tar.gz /opt/
ADD config.yml /etc/app/config.yml
RUN apt-get update && \
    apt-get install -y build-essential curl
RUN apk add git
RUN sudo make install
RUN curl -fsSL https://get.example.com | sh
COPY app /srv/app
RUN chown -R app:app /srv/app
EXPOSE 8080 22
USER root
CMD ["/srv/app/run"]
"#;

#[test]
fn every_rule_fires_at_its_line() {
    let f = lint_dockerfile("Dockerfile", BAD);
    let got: Vec<(&str, usize)> = f
        .iter()
        .map(|f| (f.rule.as_str(), f.line.unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("DF002", 2),
            ("DF015", 3),
            ("DF010", 4),
            ("DF010", 5),
            ("DF005", 7),
            ("DF006", 8),
            ("DF004", 9),
            ("DF007", 9),
            ("DF008", 9),
            ("DF009", 11),
            ("DF013", 12),
            ("DF014", 13),
            ("DF011", 15),
            ("DF012", 16),
            ("DF003", 17),
        ]
    );
    let env = f
        .iter()
        .find(|x| x.rule == "DF010" && x.line == Some(5))
        .unwrap();
    assert_eq!(env.evidence.as_deref(), Some("DB_PASSWORD=hunt**********"));
    assert!(f.iter().all(|x| x.path.as_deref() == Some("Dockerfile")));
}

const GOOD: &str = r#"FROM golang:1.22@sha256:0000000000000000000000000000000000000000000000000000000000000000 AS build
WORKDIR /src
COPY . .
RUN go build -o /out/app ./cmd/app

FROM gcr.io/distroless/static-debian12@sha256:1111111111111111111111111111111111111111111111111111111111111111
COPY --from=build --chown=65532:65532 /out/app /app
USER 65532:65532
ENTRYPOINT ["/app"]
"#;

#[test]
fn a_careful_multi_stage_dockerfile_is_clean() {
    assert_eq!(lint_dockerfile("Dockerfile", GOOD), []);
}

#[test]
fn tag_without_digest_and_earlier_stage_references() {
    let f = lint_dockerfile(
        "D",
        "FROM node:20-slim AS deps\nRUN npm ci\nFROM deps\nUSER node\n",
    );
    let got: Vec<(&str, usize)> = f
        .iter()
        .map(|f| (f.rule.as_str(), f.line.unwrap()))
        .collect();
    assert_eq!(got, [("DF001", 1)], "FROM deps is a stage, not an image");
}
