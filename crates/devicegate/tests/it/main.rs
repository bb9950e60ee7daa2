//! One integration-test binary (one link step), with a module per surface. Every test talks
//! real HTTP to a real server on 127.0.0.1 with a temporary SQLite file.

mod abuse;
mod audit;
mod browser;
mod check;
mod cli;
mod connections;
mod dialects;
mod factors;
mod flows;
mod interop;
mod languages;
mod login;
mod metrics;
mod oauth;
mod oidc_provider;
mod pages;
mod pam;
mod passkeys;
mod phishing;
mod revocation;
mod support;
mod upstream;
