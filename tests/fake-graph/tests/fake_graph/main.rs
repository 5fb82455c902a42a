//! The fake Graph and identity platform, driven over HTTP as a client would.

mod access;
mod authcode;
mod common;
mod credentials;
mod items;
mod schema;
mod shapes;
mod throttle;
mod tree;
mod upload;
