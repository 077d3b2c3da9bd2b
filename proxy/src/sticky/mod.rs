//! Sticky sessions by cookie (settings in `table/sticky.rs`), compiled per
//! backend: a map from every endpoint id (under every key) to the endpoint,
//! read on the way in; the serving endpoint's cookie written on the way out.
//!
//! A cookie only ever selects among the backend's own endpoints: anything that
//! does not decode, verify and name one of them is ignored and the request is
//! balanced as if it had none.

mod cookies;
mod keys;
mod token;

pub use keys::SessionKeys;
pub use token::{EndpointId, Stamps};

use crate::balance::{EndpointState, Pin};
use crate::table::{CookieMode, EndpointAddress, IfUnavailable, StickyCookie};
use http::HeaderMap;
use http::header::{self, HeaderValue};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use token::{ID_TEXT_LEN, MacKey};

/// Separates the endpoint id from the application's value in prefix mode.
const PREFIX_SEPARATOR: char = '~';

pub struct CompiledSticky {
    name: Arc<str>,
    mode: CookieMode,
    indirect: bool,
    nocache: bool,
    pub if_unavailable: IfUnavailable,
    max_idle: Option<u32>,
    max_life: Option<u32>,
    /// `; Path=/; HttpOnly ...`, rendered once.
    attributes: String,
    /// The first signs.
    keys: Vec<MacKey>,
    /// Every key's id of every endpoint, with the key's index.
    pins: HashMap<EndpointId, (Pin, usize)>,
    /// What each endpoint's responses carry, under the signing key.
    issued: HashMap<EndpointAddress, Issued>,
    counts: Arc<StickyCounts>,
}

/// An endpoint's cookie, rendered when the table is compiled.
struct Issued {
    id: EndpointId,
    /// `id` as cookie text (the value, or the prefix in prefix mode).
    text: String,
    /// Insert mode without timestamps: the whole `Set-Cookie` value, which
    /// never changes.
    set_cookie: Option<HeaderValue>,
}

/// How requests met their pins; kept beside the backend's state, so they
/// survive table swaps.
#[derive(Default)]
pub struct StickyCounts {
    kept: AtomicU64,
    new: AtomicU64,
    moved: AtomicU64,
    rejected: AtomicU64,
}

#[derive(Debug, Serialize)]
pub struct StickyStatus {
    pub cookie: String,
    pub mode: &'static str,
    /// Requests that went to the endpoint their cookie named.
    pub kept: u64,
    /// Requests without the cookie.
    pub new: u64,
    /// Valid cookies whose endpoint was unavailable: balanced again.
    pub moved: u64,
    /// Cookies that were tampered with, expired or name no endpoint.
    pub rejected: u64,
}

/// What the request's cookie said.
pub struct Session<'a> {
    /// The endpoint a valid cookie names.
    pub pin: Option<&'a Pin>,
    /// The pin is under the signing key (an older key's cookie is re-issued).
    current_key: bool,
    /// The valid cookie's times (stamped cookies only).
    stamps: Option<Stamps>,
    /// Seconds since the Unix epoch when the request arrived.
    now: u32,
}

impl CompiledSticky {
    /// `members`: the backend's endpoints as (address, pin).
    pub fn new(
        backend: &str,
        cookie: &StickyCookie,
        keys: &[crate::table::SecretText],
        members: Vec<(EndpointAddress, Pin)>,
        counts: Arc<StickyCounts>,
    ) -> Self {
        let keys: Vec<MacKey> = keys.iter().map(MacKey::new).collect();
        let attributes = attributes(cookie);
        let fixed_cookie = cookie.mode == CookieMode::Insert && !cookie.has_timestamps();
        let mut pins = HashMap::with_capacity(members.len() * keys.len());
        let mut issued = HashMap::with_capacity(members.len());
        for (address, pin) in members {
            let text = address.to_string();
            for (k, key) in keys.iter().enumerate() {
                let id = key.endpoint_id(backend, &text);
                if k == 0 {
                    let text = token::encode_id(&id);
                    let set_cookie = fixed_cookie
                        .then(|| {
                            HeaderValue::from_str(&format!("{}={text}{attributes}", cookie.name))
                                .ok()
                        })
                        .flatten();
                    let entry = Issued {
                        id,
                        text,
                        set_cookie,
                    };
                    issued.insert(address.clone(), entry);
                }
                pins.insert(id, (pin.clone(), k));
            }
        }
        let secs = |d: Option<crate::table::Duration>| {
            d.map(|d| u32::try_from(d.as_millis() / 1000).unwrap_or(u32::MAX))
        };
        Self {
            name: Arc::from(cookie.name.as_str()),
            mode: cookie.mode,
            indirect: cookie.indirect,
            nocache: cookie.nocache,
            if_unavailable: cookie.if_unavailable,
            max_idle: secs(cookie.max_idle),
            max_life: secs(cookie.max_life),
            attributes,
            keys,
            pins,
            issued,
            counts,
        }
    }

    fn stamped(&self) -> bool {
        self.max_idle.is_some() || self.max_life.is_some()
    }

    /// Reads the request's cookie (the first valid one when there are several)
    /// and counts the request as new or rejected; `kept`/`moved` are counted by
    /// `count_pin` once an endpoint answered.
    pub fn read(&self, headers: &HeaderMap, now: u32) -> Session<'_> {
        let mut seen = false;
        for value in cookies::request_values(headers, &self.name) {
            seen = true;
            let id_part = match self.mode {
                CookieMode::Prefix => match value.split_once(PREFIX_SEPARATOR) {
                    Some((id, _)) => id,
                    None => continue,
                },
                _ => value,
            };
            if let Some(session) = self.check(id_part, now) {
                return session;
            }
        }
        let counter = if seen {
            &self.counts.rejected
        } else {
            &self.counts.new
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Session {
            pin: None,
            current_key: false,
            stamps: None,
            now,
        }
    }

    fn check(&self, value: &str, now: u32) -> Option<Session<'_>> {
        let parsed = token::parse(value, self.stamped())?;
        let (pin, key) = self.pins.get(&parsed.id)?;
        if !self.keys.get(*key)?.verify(&self.name, &parsed) {
            return None;
        }
        let stamps = parsed.stamped.map(|(s, _)| s);
        if let Some(s) = stamps {
            let idle = self
                .max_idle
                .is_some_and(|max| now.saturating_sub(s.last) > max);
            let old = self
                .max_life
                .is_some_and(|max| now.saturating_sub(s.first) > max);
            if idle || old {
                return None;
            }
        }
        Some(Session {
            pin: Some(pin),
            current_key: *key == 0,
            stamps,
            now,
        })
    }

    /// Counts what became of a valid pin, once `served` answered: kept there,
    /// or moved (unavailable, or a retry went elsewhere).
    pub fn count_pin(&self, session: &Session<'_>, served: &EndpointState) {
        let Some(pin) = session.pin else { return };
        let counter = if std::ptr::eq(Arc::as_ptr(&pin.endpoint), served) {
            &self.counts.kept
        } else {
            &self.counts.moved
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The request as the backend should see it: without our cookie in insert
    /// mode with `indirect`, with the application's own value in prefix mode.
    pub fn edit_request(&self, headers: &mut HeaderMap) {
        match self.mode {
            CookieMode::Insert if self.indirect => {
                cookies::edit_request(headers, &self.name, |_| None);
            }
            CookieMode::Prefix => cookies::edit_request(headers, &self.name, |v| {
                Some(strip_prefix(v).unwrap_or(v).to_owned())
            }),
            _ => {}
        }
    }

    /// Pins the client to `served` (the endpoint that answered) in the response.
    pub fn edit_response(
        &self,
        headers: &mut HeaderMap,
        session: &Session<'_>,
        served: &EndpointState,
    ) {
        let Some(issued) = self.issued.get(&served.address) else {
            return;
        };
        let same = session.current_key
            && session
                .pin
                .is_some_and(|p| std::ptr::eq(Arc::as_ptr(&p.endpoint), served));
        let set = match self.mode {
            CookieMode::Insert => self.insert(headers, session, issued, same),
            CookieMode::Rewrite => {
                let keep_out = self.indirect && same;
                cookies::edit_response(headers, &self.name, |_| {
                    if keep_out {
                        cookies::SetCookieEdit::Remove
                    } else {
                        cookies::SetCookieEdit::Replace(issued.text.clone())
                    }
                }) > 0
            }
            CookieMode::Prefix => {
                let prefix = &issued.text;
                cookies::edit_response(headers, &self.name, |v| {
                    // An empty value deletes the cookie: nothing to pin.
                    if v.is_empty() {
                        cookies::SetCookieEdit::Keep
                    } else {
                        let app = strip_prefix(v).unwrap_or(v);
                        cookies::SetCookieEdit::Replace(format!("{prefix}{PREFIX_SEPARATOR}{app}"))
                    }
                }) > 0
            }
        };
        if set && self.nocache {
            cookies::make_private(headers);
        }
    }

    /// Insert mode: our cookie replaces any the backend set under our name.
    fn insert(
        &self,
        headers: &mut HeaderMap,
        session: &Session<'_>,
        issued: &Issued,
        same: bool,
    ) -> bool {
        cookies::edit_response(headers, &self.name, |_| cookies::SetCookieEdit::Remove);
        if let Some(fixed) = &issued.set_cookie {
            if self.indirect && same {
                return false;
            }
            headers.append(header::SET_COOKIE, fixed.clone());
            return true;
        }
        let now = session.now;
        let (value, refreshed) = if self.stamped() {
            let (stamps, refreshed) = match session.stamps.filter(|_| same) {
                Some(old) if now.saturating_sub(old.last) < self.refresh_after() => (old, false),
                Some(old) => (
                    Stamps {
                        first: old.first,
                        last: now,
                    },
                    true,
                ),
                None => (
                    Stamps {
                        first: now,
                        last: now,
                    },
                    true,
                ),
            };
            let Some(key) = self.keys.first() else {
                return false;
            };
            let value = token::encode_stamped(key, &self.name, &issued.id, stamps);
            (value, refreshed)
        } else {
            (issued.text.clone(), false)
        };
        if self.indirect && same && !refreshed {
            return false;
        }
        let line = format!("{}={value}{}", self.name, self.attributes);
        match HeaderValue::from_str(&line) {
            Ok(v) => {
                headers.append(header::SET_COOKIE, v);
                true
            }
            Err(_) => false,
        }
    }

    /// A valid cookie's last-seen time is moved forward at most this often, so
    /// an `indirect` cookie is not re-set on every response.
    fn refresh_after(&self) -> u32 {
        self.max_idle.map_or(u32::MAX, |idle| (idle / 16).max(1))
    }

    pub fn status(&self) -> StickyStatus {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StickyStatus {
            cookie: self.name.to_string(),
            mode: self.mode.name(),
            kept: load(&self.counts.kept),
            new: load(&self.counts.new),
            moved: load(&self.counts.moved),
            rejected: load(&self.counts.rejected),
        }
    }

    /// The cookie id of the endpoint at `address`, for the admin view.
    pub fn cookie_id(&self, address: &EndpointAddress) -> Option<String> {
        self.issued.get(address).map(|i| i.text.clone())
    }
}

/// The application's value of a prefix-mode cookie, when it carries our prefix.
fn strip_prefix(value: &str) -> Option<&str> {
    let (id, rest) = value.split_once(PREFIX_SEPARATOR)?;
    (id.len() == ID_TEXT_LEN && token::parse_id(id).is_some()).then_some(rest)
}

/// Seconds since the Unix epoch (wall clock: replicas must agree on it).
pub fn now_secs() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn attributes(cookie: &StickyCookie) -> String {
    let mut out = format!("; Path={}", cookie.path);
    if let Some(domain) = &cookie.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    if cookie.secure {
        out.push_str("; Secure");
    }
    if cookie.http_only {
        out.push_str("; HttpOnly");
    }
    if let Some(same_site) = cookie.same_site {
        out.push_str("; SameSite=");
        out.push_str(same_site.attribute());
    }
    out
}

#[cfg(test)]
mod tests;
