//! The login screen for a terminal: where to go, the user code in letters large enough to
//! read across a room, and a QR code of `verification_uri_complete` for a phone.
//!
//! Pure functions returning `String`s, so a CLI can print them and a test can read them.

use qrcode::{Color, EcLevel, QrCode};

use crate::Authorization;

/// Rows of the large letters.
const GLYPH_ROWS: usize = 5;

/// A 5-row block font for the characters user codes use (RFC 8628 §6.1 recommends letters
/// or digits, often grouped with `-`). `#` is ink.
const FONT: &[(char, [&str; GLYPH_ROWS])] = &[
    ('A', [" ### ", "#   #", "#####", "#   #", "#   #"]),
    ('B', ["#### ", "#   #", "#### ", "#   #", "#### "]),
    ('C', [" ####", "#    ", "#    ", "#    ", " ####"]),
    ('D', ["#### ", "#   #", "#   #", "#   #", "#### "]),
    ('E', ["#####", "#    ", "#### ", "#    ", "#####"]),
    ('F', ["#####", "#    ", "#### ", "#    ", "#    "]),
    ('G', [" ####", "#    ", "#  ##", "#   #", " ####"]),
    ('H', ["#   #", "#   #", "#####", "#   #", "#   #"]),
    ('I', ["#####", "  #  ", "  #  ", "  #  ", "#####"]),
    ('J', ["#####", "    #", "    #", "#   #", " ### "]),
    ('K', ["#   #", "#  # ", "###  ", "#  # ", "#   #"]),
    ('L', ["#    ", "#    ", "#    ", "#    ", "#####"]),
    ('M', ["#   #", "## ##", "# # #", "#   #", "#   #"]),
    ('N', ["#   #", "##  #", "# # #", "#  ##", "#   #"]),
    ('O', [" ### ", "#   #", "#   #", "#   #", " ### "]),
    ('P', ["#### ", "#   #", "#### ", "#    ", "#    "]),
    ('Q', [" ### ", "#   #", "# # #", "#  # ", " ## #"]),
    ('R', ["#### ", "#   #", "#### ", "#  # ", "#   #"]),
    ('S', [" ####", "#    ", " ### ", "    #", "#### "]),
    ('T', ["#####", "  #  ", "  #  ", "  #  ", "  #  "]),
    ('U', ["#   #", "#   #", "#   #", "#   #", " ### "]),
    ('V', ["#   #", "#   #", "#   #", " # # ", "  #  "]),
    ('W', ["#   #", "#   #", "# # #", "## ##", "#   #"]),
    ('X', ["#   #", " # # ", "  #  ", " # # ", "#   #"]),
    ('Y', ["#   #", " # # ", "  #  ", "  #  ", "  #  "]),
    ('Z', ["#####", "   # ", "  #  ", " #   ", "#####"]),
    ('0', [" ### ", "#  ##", "# # #", "##  #", " ### "]),
    ('1', ["  #  ", " ##  ", "  #  ", "  #  ", " ### "]),
    ('2', [" ### ", "#   #", "  ## ", " #   ", "#####"]),
    ('3', ["#### ", "    #", " ### ", "    #", "#### "]),
    ('4', ["#   #", "#   #", "#####", "    #", "    #"]),
    ('5', ["#####", "#    ", "#### ", "    #", "#### "]),
    ('6', [" ### ", "#    ", "#### ", "#   #", " ### "]),
    ('7', ["#####", "    #", "   # ", "  #  ", "  #  "]),
    ('8', [" ### ", "#   #", " ### ", "#   #", " ### "]),
    ('9', [" ### ", "#   #", " ####", "    #", " ### "]),
    ('-', ["   ", "   ", "###", "   ", "   "]),
    (' ', ["   ", "   ", "   ", "   ", "   "]),
];

/// The whole screen for `authorization`: the address, the code large and plain, and a QR
/// code of the complete address (or of the plain one when the server gave no complete one).
pub fn render(authorization: &Authorization) -> String {
    render_inner(authorization, |qr| qr)
}

/// [`render`] for a terminal that takes ANSI colours: the QR code is drawn white on black
/// whatever the terminal's theme, so phones read it on light backgrounds too.
pub fn render_ansi(authorization: &Authorization) -> String {
    render_inner(authorization, |qr| {
        qr.lines()
            .map(|l| format!("\x1b[97;40m{l}\x1b[0m\n"))
            .collect()
    })
}

fn render_inner(authorization: &Authorization, paint_qr: impl Fn(String) -> String) -> String {
    let qr_target = authorization
        .verification_uri_complete()
        .unwrap_or(authorization.verification_uri());
    let mut out = String::new();
    out.push_str("To sign in, open this address in a browser:\n\n");
    out.push_str(&format!("    {}\n\n", authorization.verification_uri()));
    out.push_str("and enter the code:\n\n");
    if let Some(big) = big_text(authorization.user_code()) {
        for line in big.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push('\n');
    }
    out.push_str(&format!("    {}\n\n", authorization.user_code()));
    if let Some(qr) = qr_code(qr_target) {
        out.push_str(
            "or scan this code with a phone to open the address with the code filled in:\n\n",
        );
        out.push_str(&paint_qr(qr));
    }
    out
}

/// `text` in 5-row block letters, or `None` if it has a character the font lacks (the plain
/// code is shown either way). Lowercase is shown as uppercase, as codes are case-insensitive
/// in practice (RFC 8628 §6.1).
pub fn big_text(text: &str) -> Option<String> {
    let glyphs: Vec<&[&str; GLYPH_ROWS]> = text
        .chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            FONT.iter().find(|(g, _)| *g == c).map(|(_, rows)| rows)
        })
        .collect::<Option<_>>()?;
    let mut out = String::new();
    for row in 0..GLYPH_ROWS {
        let line: Vec<String> = glyphs.iter().map(|g| g[row].replace('#', "█")).collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    }
    Some(out)
}

/// `data` as a QR code drawn with Unicode half blocks, two modules per character row, with a
/// two-module quiet zone. Light modules are drawn (`█▀▄`) and dark ones left blank, which
/// reads correctly on the usual light-on-dark terminal; a caller that can colour the output
/// should print it light-on-dark explicitly so that light themes show it right too.
pub fn qr_code(data: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    const QUIET: usize = 2;
    let size = width + 2 * QUIET;
    let light = |x: usize, y: usize| -> bool {
        if x < QUIET || y < QUIET || x >= width + QUIET || y >= width + QUIET {
            return true;
        }
        colors[(y - QUIET) * width + (x - QUIET)] == Color::Light
    };
    let mut out = String::new();
    for y in (0..size).step_by(2) {
        for x in 0..size {
            let top = light(x, y);
            let bottom = y + 1 >= size || light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use devicegate_proto::DeviceAuthorizationResponse;

    use super::*;

    fn authorization(complete: Option<&str>) -> Authorization {
        Authorization::from_response(
            DeviceAuthorizationResponse {
                device_code: "dgd_x".into(),
                user_code: "BDKW-QZTR".into(),
                verification_uri: "https://id.example/device".into(),
                verification_uri_complete: complete.map(Into::into),
                expires_in: 600,
                interval: Some(5),
            },
            Instant::now(),
        )
    }

    #[test]
    fn the_screen_shows_the_address_the_code_large_and_plain_and_a_qr_code() {
        let s = render(&authorization(Some(
            "https://id.example/device?user_code=BDKW-QZTR",
        )));
        assert!(s.contains("    https://id.example/device\n"), "{s}");
        assert!(s.contains("    BDKW-QZTR\n"), "{s}");
        assert!(!s.contains("dgd_x"), "the device code never shows: {s}");
        // The first row of the large B, D, K, W, -, Q, Z, T and R.
        assert!(
            s.contains("    ████  ████  █   █ █   █      ███  █████ █████ ████\n"),
            "{s}"
        );
        // The QR code follows, its quiet zone a full row of light blocks.
        let qr = qr_code("https://id.example/device?user_code=BDKW-QZTR").unwrap();
        assert!(s.ends_with(&qr));
        let first = qr.lines().next().unwrap();
        assert!(first.chars().all(|c| c == '█'), "{first}");
    }

    #[test]
    fn the_qr_code_encodes_the_complete_address() {
        let data = "https://id.example/device?user_code=BDKW-QZTR";
        let qr = qr_code(data).unwrap();
        let expected = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::L).unwrap();
        let w = expected.width();
        let lines: Vec<Vec<char>> = qr.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(lines.len(), (w + 4).div_ceil(2));
        // Read the modules back out of the half blocks and compare with the encoder's.
        for y in 0..w {
            for x in 0..w {
                let (row, col) = ((y + 2) / 2, x + 2);
                let ch = lines[row][col];
                let top_half = (y + 2) % 2 == 0;
                let light = match ch {
                    '█' => true,
                    ' ' => false,
                    '▀' => top_half,
                    '▄' => !top_half,
                    other => panic!("unexpected {other:?}"),
                };
                assert_eq!(light, expected[(x, y)] == Color::Light, "module ({x},{y})");
            }
        }
    }

    #[test]
    fn the_ansi_screen_paints_only_the_qr_code() {
        let a = authorization(Some("https://id.example/device?user_code=BDKW-QZTR"));
        let (plain, ansi) = (render(&a), render_ansi(&a));
        let painted: Vec<&str> = ansi.lines().filter(|l| l.contains("\x1b[")).collect();
        let qr = qr_code("https://id.example/device?user_code=BDKW-QZTR").unwrap();
        assert_eq!(painted.len(), qr.lines().count());
        assert_eq!(
            ansi.replace("\x1b[97;40m", "").replace("\x1b[0m", ""),
            plain
        );
    }

    #[test]
    fn without_a_complete_address_the_qr_code_opens_the_plain_one() {
        let s = render(&authorization(None));
        assert!(s.ends_with(&qr_code("https://id.example/device").unwrap()));
    }

    #[test]
    fn codes_with_characters_the_font_lacks_are_shown_plain_only() {
        assert!(big_text("ÄB").is_none());
        assert_eq!(big_text("a").unwrap(), big_text("A").unwrap());
    }
}
