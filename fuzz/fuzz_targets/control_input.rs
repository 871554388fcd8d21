//! Network-facing parsers outside the data plane: control-plane frames and messages (strict,
//! and as a member connection reads them: unknown types skipped, records with extensions),
//! invitation tokens, node certificates (with the meshd identity extension) and CA registry
//! records. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshd::control::frame::decode_body;
use meshd::control::message::Message;
use meshd::control::protocol::decode_member;

fuzz_target!(|data: &[u8]| {
    let _ = decode_body::<Message>(data);
    let _ = decode_member(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = pki::InvitationToken::parse(text);
        let _ = mesh_config::parse(text, std::path::Path::new("fuzz.toml"));
    }
    let _ = pki::NodeCertificate::parse(data);
    let _ = pki::extension::decode_identity(data);
    let _ = mesh_config::registry::RegistryRecord::parse(data);
});
