//! Password checks off the async worker threads, with a bound on concurrent hashes.

use devicegate_core::password::{hash_password, verify_password};
use tokio::sync::Semaphore;

#[derive(Debug)]
pub struct Passwords {
    permits: Semaphore,
    /// Verified against when the user does not exist, so that an unknown username costs the
    /// same time as a wrong password.
    dummy: String,
}

impl Passwords {
    pub fn new(max_concurrent: usize) -> Passwords {
        Passwords {
            permits: Semaphore::new(max_concurrent.max(1)),
            dummy: hash_password("devicegate-dummy-password"),
        }
    }

    /// True when `password` matches `phc`; with `phc` absent, burns the same time and fails.
    pub async fn verify(&self, phc: Option<String>, password: String) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (known, phc) = match phc {
            Some(p) => (true, p),
            None => (false, self.dummy.clone()),
        };
        let ok = tokio::task::spawn_blocking(move || verify_password(&phc, &password))
            .await
            .unwrap_or(false);
        known && ok
    }
}
