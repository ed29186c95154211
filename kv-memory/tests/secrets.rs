//! A failed session write keeps the session id out of its error.

use kvkit_core::{Capabilities, Error};
use kvkit_memory::MemoryStore;
use kvkit_patterns::{Session, SessionManager};
use kvkit_testsuite::secrets::assert_hides_session_id;

#[tokio::test]
async fn a_refused_session_write_hides_the_id() {
    let caps = Capabilities::new("memory").with_max_value_bytes(16);
    let store = MemoryStore::builder().capabilities(caps).build();
    let sessions = SessionManager::<_, Session>::new(store);
    let session = Session {
        user_id: "u1".into(),
        email: "ada@example.com".into(),
        role: "admin".into(),
        created_at: std::time::UNIX_EPOCH,
    };
    let error = sessions.create(&session).await.unwrap_err();
    assert!(matches!(error, Error::ValueTooLarge { .. }), "{error:?}");
    assert_hides_session_id(&error, None);
}
