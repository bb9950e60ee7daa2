//! What the checker found: one line per check, with the clause it tests, and a summary.

use serde::Serialize;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    /// A SHOULD (or a widely relied-on practice) not met.
    Warn,
    /// A MUST broken.
    Fail,
    /// Not run, with why.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub name: &'static str,
    /// The clause it tests: "RFC 8628 §3.5".
    pub clause: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub pass: usize,
    pub warn: usize,
    pub fail: usize,
    pub skip: usize,
}

/// Every finding, printed as it comes unless the report is JSON.
#[derive(Debug)]
pub struct Report {
    pub findings: Vec<Finding>,
    only: Vec<String>,
    live: bool,
}

impl Report {
    /// `only`: names (or name prefixes such as `token.`) to report; empty for all. `live`:
    /// print each finding as it is made.
    pub fn new(only: Vec<String>, live: bool) -> Report {
        Report {
            findings: Vec::new(),
            only,
            live,
        }
    }

    /// Whether `name` is among the checks asked for.
    pub fn wants(&self, name: &str) -> bool {
        self.only.is_empty()
            || self
                .only
                .iter()
                .any(|o| name == o || (o.ends_with('.') && name.starts_with(o.as_str())))
    }

    /// Whether any of `names` is asked for: a group of checks runs only then.
    pub fn wants_any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.wants(n))
    }

    pub fn add(
        &mut self,
        name: &'static str,
        clause: &'static str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        if !self.wants(name) {
            return;
        }
        let f = Finding {
            name,
            clause,
            outcome,
            detail: detail.into(),
        };
        if self.live {
            println!("{}", line(&f));
        }
        self.findings.push(f);
    }

    pub fn pass(&mut self, name: &'static str, clause: &'static str, detail: impl Into<String>) {
        self.add(name, clause, Outcome::Pass, detail);
    }

    pub fn warn(&mut self, name: &'static str, clause: &'static str, detail: impl Into<String>) {
        self.add(name, clause, Outcome::Warn, detail);
    }

    pub fn fail(&mut self, name: &'static str, clause: &'static str, detail: impl Into<String>) {
        self.add(name, clause, Outcome::Fail, detail);
    }

    pub fn skip(&mut self, name: &'static str, clause: &'static str, detail: impl Into<String>) {
        self.add(name, clause, Outcome::Skip, detail);
    }

    /// PASS when `ok`, else `otherwise`.
    pub fn expect(
        &mut self,
        name: &'static str,
        clause: &'static str,
        ok: bool,
        otherwise: Outcome,
        detail: impl Into<String>,
    ) {
        let outcome = if ok { Outcome::Pass } else { otherwise };
        self.add(name, clause, outcome, detail);
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for f in &self.findings {
            match f.outcome {
                Outcome::Pass => s.pass += 1,
                Outcome::Warn => s.warn += 1,
                Outcome::Fail => s.fail += 1,
                Outcome::Skip => s.skip += 1,
            }
        }
        s
    }

    pub fn summary_line(&self) -> String {
        let s = self.summary();
        format!(
            "{} checks: {} passed, {} warned, {} failed, {} skipped",
            self.findings.len(),
            s.pass,
            s.warn,
            s.fail,
            s.skip
        )
    }
}

/// "PASS  token.slow_down  (RFC 8628 §3.5)  a poll 1 s early got slow_down".
pub fn line(f: &Finding) -> String {
    format!(
        "{:<4}  {:<36}  ({})  {}",
        f.outcome.label(),
        f.name,
        f.clause,
        f.detail
    )
}
