//! Password checks off the async worker threads, on a fixed set of hashing threads.
//!
//! argon2id with OWASP's parameters allocates 19 MiB per hash. Run on tokio's blocking pool,
//! whose threads come and go by the hundred, every thread that ever hashed kept its own
//! allocator arena of that size: resident memory reached gigabytes after a burst of sign-ons.
//! A fixed set of threads (one per permitted concurrent hash) bounds both the CPU and the
//! memory that hashing can take.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use devicegate_core::password::{hash_password, verify_password};

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug)]
pub struct Passwords {
    jobs: Mutex<mpsc::Sender<Job>>,
    /// Verified against when the user does not exist, so that an unknown username costs the
    /// same time as a wrong password.
    dummy: String,
}

impl Passwords {
    /// Starts `threads` hashing threads; waiting checks queue up in order.
    pub fn new(threads: usize) -> Passwords {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("devicegate-argon2-{n}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Passwords {
            jobs: Mutex::new(jobs),
            dummy: hash_password("devicegate-dummy-password"),
        }
    }

    /// True when `password` matches `phc`; with `phc` absent, burns the same time and fails.
    pub async fn verify(&self, phc: Option<String>, password: String) -> bool {
        let (known, phc) = match phc {
            Some(p) => (true, p),
            None => (false, self.dummy.clone()),
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(verify_password(&phc, &password));
        });
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        sent.is_ok() && answered.await.unwrap_or(false) && known
    }
}
