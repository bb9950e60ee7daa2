//! The person's own language: which one a request gets, and its words.
//!
//! The words are Fluent files (`locales/<lang>.ftl`, built in; a new file is a new language),
//! English beneath every other language. An operator may put their own `<lang>.ftl` files in
//! `locales_dir`: a message there replaces the built-in one, and a new file adds a language.
//! A request gets the language its `Accept-Language` asks for, best first (`pt-BR` gets `pt`),
//! English when none is known; an operator may pin one language for every request instead.
//! Pages and the flows API's `error_description` speak it; OAuth endpoints keep RFC 6749's
//! ASCII English.

mod strings;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use fluent_bundle::FluentResource;
use fluent_bundle::concurrent::FluentBundle;
use fluent_langneg::{NegotiationStrategy, negotiate_languages};
use http::HeaderValue;
use unic_langid::LanguageIdentifier;

use strings::Bundle;
pub use strings::Strings;

use crate::StartError;

include!(concat!(env!("OUT_DIR"), "/locales.rs"));

/// The fallback beneath every language.
const ENGLISH: &str = "en";
/// Languages read from one `Accept-Language`: a browser sends a handful; more is noise.
const MAX_ASKED: usize = 16;
/// Bytes of it read: browsers send under 100; parsing a header of many kilobytes would cost
/// more than the request it rides on (measured in `benches/i18n.rs`).
const MAX_HEADER: usize = 512;

/// Every language the server speaks, prepared at start.
#[derive(Debug)]
pub struct Catalog {
    tags: Vec<LanguageIdentifier>,
    langs: Vec<Arc<Strings>>,
    english: usize,
    pinned: Option<usize>,
}

impl Catalog {
    /// The built-in languages, with the operator's files from `dir` over them, and every
    /// request answered in `pinned` if set.
    pub fn new(pinned: Option<&str>, dir: Option<&Path>) -> Result<Catalog, StartError> {
        let bad = StartError::Languages;
        let mut sources: BTreeMap<String, Vec<Arc<FluentResource>>> = BTreeMap::new();
        for (tag, text) in BUILT_IN {
            sources
                .entry((*tag).to_owned())
                .or_default()
                .push(parse(tag, text.to_string()).map_err(bad)?);
        }
        if let Some(dir) = dir {
            for (tag, resource) in operator_files(dir).map_err(bad)? {
                sources.entry(tag).or_default().push(resource);
            }
        }
        let english = sources
            .get(ENGLISH)
            .cloned()
            .ok_or_else(|| bad("no English messages".into()))?;
        let mut tags = Vec::new();
        let mut langs = Vec::new();
        for (tag, own) in &sources {
            let id: LanguageIdentifier = tag
                .parse()
                .map_err(|_| bad(format!("{tag}.ftl: not a language tag")))?;
            let fallback: LanguageIdentifier = ENGLISH.parse().expect("a valid tag");
            let mut bundle = FluentBundle::new_concurrent(vec![id.clone(), fallback]);
            // Placeables go into HTML and JSON, where Unicode isolation marks would be noise.
            bundle.set_use_isolating(false);
            // English beneath every other language, the language's own files over it.
            let beneath: &[Arc<FluentResource>] = if tag == ENGLISH { &[] } else { &english };
            for r in beneath.iter().chain(own) {
                bundle.add_resource_overriding(r.clone());
            }
            tags.push(id);
            langs.push(Arc::new(Strings::new(tag.clone(), Bundle(bundle))));
        }
        let english = sources.keys().position(|t| t == ENGLISH).unwrap_or(0);
        let pinned = match pinned {
            None => None,
            Some(p) => Some(sources.keys().position(|t| t == p).ok_or_else(|| {
                let known: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
                bad(format!(
                    "language {p:?} has no messages; known: {}",
                    known.join(", ")
                ))
            })?),
        };
        Ok(Catalog {
            tags,
            langs,
            english,
            pinned,
        })
    }

    /// The languages served, as tags.
    pub fn languages(&self) -> Vec<String> {
        self.tags.iter().map(|t| t.to_string()).collect()
    }

    /// The words for a request with this `Accept-Language`.
    pub fn pick(&self, accept_language: Option<&HeaderValue>) -> Arc<Strings> {
        if let Some(i) = self.pinned {
            return self.langs[i].clone();
        }
        let asked: Vec<LanguageIdentifier> = accept_language
            .and_then(|v| v.to_str().ok())
            .map(|v| match v.get(..MAX_HEADER) {
                // Up to the last whole entry (the header is visible ASCII, so any byte is a
                // character boundary).
                Some(head) => head.rsplit_once(',').map_or(head, |(whole, _)| whole),
                None => v,
            })
            .map(|v| {
                fluent_langneg::accepted_languages::parse(v)
                    .into_iter()
                    .take(MAX_ASKED)
                    .collect()
            })
            .unwrap_or_default();
        let default = &self.tags[self.english];
        let chosen = negotiate_languages(
            &asked,
            &self.tags,
            Some(default),
            NegotiationStrategy::Lookup,
        );
        let i = chosen
            .first()
            .and_then(|c| self.tags.iter().position(|t| t == *c))
            .unwrap_or(self.english);
        self.langs[i].clone()
    }

    /// English, for what no person reads in their own language (the flows API outside a
    /// request, logs).
    pub fn english(&self) -> Arc<Strings> {
        self.langs[self.english].clone()
    }
}

/// A Fluent file, or every parse error in it with its line.
fn parse(tag: &str, text: String) -> Result<Arc<FluentResource>, String> {
    match FluentResource::try_new(text) {
        Ok(r) => Ok(Arc::new(r)),
        Err((r, errors)) => {
            let source = r.source();
            let lines: Vec<String> = errors
                .iter()
                .map(|e| {
                    let line = source[..e.pos.start.min(source.len())]
                        .lines()
                        .count()
                        .max(1);
                    format!("line {line}: {}", e.kind)
                })
                .collect();
            Err(format!("{tag}.ftl: {}", lines.join("; ")))
        }
    }
}

/// The operator's `<lang>.ftl` files; each message must be one devicegate has, so that a
/// misspelt name is an error at start rather than a string that silently never shows.
fn operator_files(dir: &Path) -> Result<Vec<(String, Arc<FluentResource>)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_none_or(|x| x != "ftl") {
            continue;
        }
        let Some(tag) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let resource = parse(tag, text)?;
        for entry in resource.entries() {
            if let fluent_syntax::ast::Entry::Message(m) = entry
                && !Strings::MESSAGES.iter().any(|(id, _)| *id == m.id.name)
            {
                return Err(format!(
                    "{}: {:?} is not one of devicegate's messages",
                    path.display(),
                    m.id.name
                ));
            }
        }
        out.push((tag.to_owned(), resource));
    }
    Ok(out)
}

tokio::task_local! {
    static CURRENT: Arc<Strings>;
}

/// Runs `f` with `t` as the language of what it says (the flows API's errors).
pub async fn speaking<F: Future>(t: Arc<Strings>, f: F) -> F::Output {
    CURRENT.scope(t, f).await
}

/// The language of the request being answered, if one was chosen.
pub fn current() -> Option<Arc<Strings>> {
    CURRENT.try_with(Arc::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::new(None, None).unwrap()
    }

    #[test]
    fn every_built_in_language_has_every_message_with_its_variables() {
        let english = BUILT_IN.iter().find(|(t, _)| *t == ENGLISH).unwrap().1;
        let english = FluentResource::try_new(english.to_owned()).unwrap();
        let ids: Vec<&str> = english
            .entries()
            .filter_map(|e| match e {
                fluent_syntax::ast::Entry::Message(m) => Some(m.id.name),
                _ => None,
            })
            .collect();
        // English and the code agree on the messages.
        let mut in_code: Vec<&str> = Strings::MESSAGES.iter().map(|(id, _)| *id).collect();
        let mut in_file = ids.clone();
        in_code.sort();
        in_file.sort();
        assert_eq!(
            in_code, in_file,
            "en.ftl and strings.rs list other messages"
        );
        assert!(BUILT_IN.len() >= 6, "at least six languages are built in");
        for (tag, text) in BUILT_IN {
            let r = FluentResource::try_new(text.to_string())
                .unwrap_or_else(|(_, e)| panic!("{tag}.ftl does not parse: {e:?}"));
            let mut bundle = FluentBundle::new_concurrent(vec![tag.parse().unwrap()]);
            bundle.set_use_isolating(false);
            bundle.add_resource(r).unwrap();
            for (id, vars) in Strings::MESSAGES {
                let msg = bundle
                    .get_message(id)
                    .unwrap_or_else(|| panic!("{tag}.ftl lacks {id}"));
                let mut args = fluent_bundle::FluentArgs::new();
                for v in *vars {
                    args.set(*v, 2);
                }
                let mut errors = Vec::new();
                let text = bundle.format_pattern(msg.value().unwrap(), Some(&args), &mut errors);
                assert!(errors.is_empty(), "{tag}.ftl {id}: {errors:?}");
                assert!(!text.trim().is_empty(), "{tag}.ftl {id} is empty");
            }
        }
    }

    #[test]
    fn accept_language_picks_the_best_known_language() {
        let c = catalog();
        let pick = |h: &str| {
            c.pick(Some(&HeaderValue::from_str(h).unwrap()))
                .lang
                .clone()
        };
        assert_eq!(c.pick(None).lang, "en");
        assert_eq!(pick("de-CH, de;q=0.9, en;q=0.5"), "de");
        assert_eq!(pick("pt-BR"), "pt");
        assert_eq!(pick("ja,en-US;q=0.9"), "ja");
        assert_eq!(pick("sv, fr;q=0.3"), "fr");
        assert_eq!(pick("sv, nb"), "en");
        assert_eq!(pick("en-GB,fr;q=0.8"), "en");
        assert_eq!(pick("*"), "en");
        assert_eq!(pick(";;;,,,q=x"), "en");
        // Only the first entries of an overlong header count.
        let noise = vec!["xx-XX"; 200].join(",");
        assert_eq!(pick(&format!("ja,{noise}")), "ja");
        assert_eq!(pick(&format!("{noise},ja")), "en");
    }

    #[test]
    fn plurals_follow_each_language() {
        let c = catalog();
        let t = |tag: &str| c.pick(Some(&HeaderValue::from_str(tag).unwrap()));
        let en = t("en");
        assert_eq!(en.attempts_left(1), "One attempt left.");
        assert_eq!(en.attempts_left(3), "3 attempts left.");
        assert_eq!(t("de").attempts_left(1), "Noch ein Versuch übrig.");
        assert_eq!(t("de").attempts_left(4), "Noch 4 Versuche übrig.");
        // French counts 0 as one; English does not.
        assert_eq!(t("fr").minutes_ago(0), t("fr").minutes_ago(1));
        assert_ne!(en.minutes_ago(0), en.minutes_ago(1));
        // Japanese has no plural forms.
        assert_eq!(t("ja").attempts_left(1), "残り 1 回入力できます。");
    }

    #[test]
    fn operators_replace_and_add_and_pin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("de.ftl"), "approve_button = Jawohl\n").unwrap();
        std::fs::write(dir.path().join("nl.ftl"), "deny_button = Weigeren\n").unwrap();
        let c = Catalog::new(None, Some(dir.path())).unwrap();
        let pick = |h: &str| c.pick(Some(&HeaderValue::from_str(h).unwrap()));
        assert_eq!(pick("de").approve_button, "Jawohl");
        // The rest of German is untouched.
        assert_eq!(
            pick("de").deny_button,
            catalog()
                .pick(Some(&HeaderValue::from_static("de")))
                .deny_button
        );
        // A new language, English beneath.
        assert_eq!(pick("nl").deny_button, "Weigeren");
        assert_eq!(pick("nl").approve_button, "Approve");
        assert_eq!(pick("nl").lang, "nl");

        let pinned = Catalog::new(Some("ja"), None).unwrap();
        assert_eq!(
            pinned.pick(Some(&HeaderValue::from_static("de"))).lang,
            "ja"
        );
        assert!(Catalog::new(Some("xx"), None).is_err());

        std::fs::write(dir.path().join("fr.ftl"), "aprove_button = Oui\n").unwrap();
        let e = Catalog::new(None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("aprove_button"), "{e}");
        std::fs::write(dir.path().join("fr.ftl"), "approve_button = { $\n").unwrap();
        let e = Catalog::new(None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("fr.ftl") && e.contains("line 1"), "{e}");
    }
}
