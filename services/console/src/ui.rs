//! The reader's language and time zone, and the console's words in
//! Japanese.
//!
//! The language is the one chosen on the preferences page (a cookie), else
//! the first of Japanese and English in `Accept-Language`, else English.
//! Times are shown in the chosen time zone, else UTC. Templates say every
//! word in English through `t("…")`; `JA` holds its Japanese, and a unit test
//! fails when a template says a word `JA` lacks.

use actix_web::HttpRequest;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The cookie holding the chosen language (`en`, `ja`).
pub const LANG: &str = "opsledger_lang";
/// The cookie holding the chosen time zone (an IANA name).
pub const TZ: &str = "opsledger_tz";

/// How a page speaks to its reader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ui {
    pub lang: &'static str,
    pub tz: Tz,
}

impl Ui {
    pub fn of(req: &HttpRequest) -> Ui {
        let lang = req
            .cookie(LANG)
            .and_then(|c| language(c.value()))
            .or_else(|| {
                req.headers()
                    .get(actix_web::http::header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(accepted)
            })
            .unwrap_or("en");
        let tz = req
            .cookie(TZ)
            .and_then(|c| c.value().parse::<Tz>().ok())
            .unwrap_or(Tz::UTC);
        Ui { lang, tz }
    }
}

/// A language the console speaks, by its tag (`ja-JP` is `ja`).
pub fn language(tag: &str) -> Option<&'static str> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    match primary.as_str() {
        "ja" => Some("ja"),
        "en" => Some("en"),
        _ => None,
    }
}

/// The language of `Accept-Language` the console speaks with the highest
/// weight (RFC 9110 §12.5.4); the first listed wins a tie.
pub fn accepted(header: &str) -> Option<&'static str> {
    let mut best: Option<(&'static str, f32)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(language) else {
            continue;
        };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l)
}

/// `key` (English) in `lang`.
pub fn translate(lang: &str, key: &str) -> String {
    if lang == "ja" {
        if let Some((_, ja)) = JA.iter().find(|(en, _)| *en == key) {
            return (*ja).to_owned();
        }
    }
    key.to_owned()
}

/// An instant as the reader reads it: `2026-12-05 21:04 JST`.
pub fn when(at: &DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// The first instant of `day` in `tz` (UTC midnight if the zone skips it).
pub fn midnight(day: chrono::NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&naive)
        .earliest()
        .map_or_else(|| naive.and_utc(), |t| t.with_timezone(&Utc))
}

/// `2026-12-06T10:00` (a browser's `datetime-local`) in `tz`, as an instant.
pub fn local_instant(text: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// The console's words in Japanese.
pub const JA: &[(&str, &str)] = &[
    ("Operations", "運用"),
    ("Maintenance", "保守"),
    ("Changes", "変更"),
    ("Calendar", "カレンダー"),
    ("Windows", "メンテナンス枠"),
    ("Proposals", "改善提案"),
    ("Runbooks", "手順書"),
    ("Inquiries", "問い合わせ"),
    ("Work ledger", "作業台帳"),
    ("Reports", "レポート"),
    ("Audit", "監査"),
    ("Preferences", "設定"),
    ("Pages", "ページ"),
    ("Bad request", "リクエストが正しくありません"),
    ("Conflict", "競合"),
    ("Unprocessable", "処理できません"),
    ("Unavailable", "利用できません"),
    ("Unauthorized", "認証されていません"),
    ("Too many", "多すぎます"),
    ("Sign in", "サインイン"),
    ("Sign out", "サインアウト"),
    ("Token", "トークン"),
    (
        "Paste the bearer token you were given.",
        "発行されたベアラートークンを貼り付けてください。",
    ),
    ("Operations queue", "運用キュー"),
    ("Maintenance queue", "保守キュー"),
    ("Acknowledge selected", "選択したものを受付"),
    ("Select", "選択"),
    ("Kind", "種別"),
    ("Title", "件名"),
    ("Severity", "重大度"),
    ("Status", "状態"),
    ("Age", "経過"),
    ("Assignee", "担当者"),
    ("Escalates in", "次のエスカレーションまで"),
    (
        "Nothing waits in this queue.",
        "このキューに待ちはありません。",
    ),
    ("Service", "サービス"),
    ("Impact", "影響"),
    ("since", "開始"),
    ("until", "終了"),
    ("Team", "チーム"),
    ("nobody", "未割当"),
    ("Escalation level", "エスカレーション段階"),
    ("next at", "次回"),
    ("Opened", "発生"),
    ("Version", "版"),
    ("Timeline", "タイムライン"),
    ("When", "日時"),
    ("What", "内容"),
    ("Who", "実施者"),
    ("Detail", "詳細"),
    ("All", "すべて"),
    ("Notes", "メモ"),
    ("Actions", "対応"),
    ("Findings", "原因調査"),
    ("Alerts", "アラート"),
    ("Notifications", "通知"),
    ("Acknowledge", "受付"),
    ("Hand off", "保守へ引き継ぎ"),
    ("Mitigate", "暫定復旧"),
    ("Resolve", "解決"),
    ("Close", "クローズ"),
    ("Reopen", "再オープン"),
    ("Reason", "理由"),
    ("Add a note", "メモを追加"),
    ("Text", "本文"),
    ("Visibility", "公開範囲"),
    ("internal", "社内のみ"),
    ("client-visible", "顧客にも公開"),
    ("Record an action", "対応を記録"),
    ("Description", "説明"),
    ("Minutes spent", "所要時間（分）"),
    ("inspection", "点検"),
    ("restart", "再起動"),
    ("runbook step", "手順書の手順"),
    ("recovery", "復旧"),
    ("fix", "修正"),
    ("Record a finding", "原因を記録"),
    ("Statement", "所見"),
    ("Save", "保存"),
    ("Do it again now", "今の状態でもう一度実行"),
    ("What changed meanwhile", "その間の変更"),
    ("Showing the state at", "次の時点の状態を表示しています："),
    ("actions are disabled", "操作はできません"),
    ("Back to now", "現在に戻る"),
    ("Keys", "キー操作"),
    ("next row", "次の行"),
    ("previous row", "前の行"),
    ("open the row", "行を開く"),
    ("acknowledge", "受付"),
    ("this list of keys", "このキー一覧"),
    ("Language", "言語"),
    ("Time zone", "タイムゾーン"),
    ("Not found", "見つかりません"),
    ("There is no such page.", "そのページはありません。"),
    ("Refused", "拒否されました"),
    ("Back to the start", "最初に戻る"),
    ("Your incidents", "お客様のインシデント"),
    ("Your notices", "お知らせ"),
    ("Request a change", "変更を申請"),
    ("Summary", "概要"),
    ("Risk", "リスク"),
    ("Requested by", "申請者"),
    ("Submit", "提出"),
    ("Approve", "承認"),
    ("Reject", "却下"),
    ("Schedule", "予定"),
    ("Start", "開始"),
    ("Complete", "完了"),
    ("Fail", "失敗"),
    ("Starts", "開始予定"),
    ("Ends", "終了予定"),
    ("Open", "未完了"),
    ("Week", "週"),
    ("Month", "月"),
    ("Previous", "前へ"),
    ("Next", "次へ"),
    ("File an inquiry", "問い合わせを送る"),
    ("Downtime", "停止時間"),
    ("Availability", "稼働率"),
    ("From", "開始"),
    ("To", "終了"),
    ("Show", "表示"),
    ("Search", "検索"),
    ("Event", "イベント"),
    ("Position", "位置"),
    ("Stream", "ストリーム"),
    ("None yet.", "まだありません。"),
    ("Category", "区分"),
    ("Filters", "絞り込み"),
    ("Record (stream or id)", "記録（ストリームまたはID）"),
    ("From (RFC 3339)", "開始（RFC 3339）"),
    ("To (RFC 3339)", "終了（RFC 3339）"),
    ("Announce", "告知"),
    ("End", "終了"),
    ("Cancel", "中止"),
    ("Comment", "コメント"),
    ("Implemented by change", "変更で実施済み"),
    ("Verify", "効果を確認"),
    ("Your services", "ご契約のサービス"),
    ("SLA target", "SLA目標"),
    ("Notice period", "事前通知期間"),
    ("Change", "変更"),
    ("Step", "段階"),
    ("Mail", "メール"),
    ("change_awaiting_approval", "承認待ち"),
    ("change_approved", "承認されました"),
    ("change_rejected", "却下されました"),
    ("change_scheduled", "予定されました"),
    ("change_started", "開始されました"),
    ("change_completed", "完了しました"),
    ("change_failed", "失敗しました"),
    ("Run a runbook", "手順書を実行"),
    ("Runbook", "手順書"),
    ("optional", "任意"),
    ("Incident", "インシデント"),
    ("double-check", "ダブルチェック"),
    ("Done by", "実施"),
    ("Confirmed by", "確認"),
    ("Done", "完了にする"),
    ("Confirm", "確認する"),
    (
        "Waiting for a second person to confirm.",
        "別の担当者の確認を待っています。",
    ),
    ("Outcome", "結果"),
    ("Finish", "終了"),
    ("Answer", "回答する"),
    ("Escalate", "エスカレーション"),
    ("Note", "備考"),
    ("Client", "顧客"),
    (
        "Unplanned downtime per service (weighted minutes)",
        "サービス別の計画外停止時間（加重、分）",
    ),
    ("Outage", "全面停止"),
    ("Partial", "部分停止"),
    ("Degraded", "性能低下"),
    ("Planned", "計画"),
    ("Weighted", "加重"),
    ("Monthly report", "月次レポート"),
    ("Repeats", "繰り返し"),
    ("Raised by", "起票者"),
    ("Raised", "起票"),
    ("Decided by", "判断者"),
    ("Runbook executions", "手順書の実行"),
    ("Next step", "次の手順"),
    ("Awaiting confirmation", "確認待ち"),
    ("Started by", "開始者"),
    ("Started", "開始"),
    ("Subject", "件名"),
    ("Answers", "回答"),
    ("Work", "作業区分"),
    ("Rollback plan", "切り戻し計画"),
    ("Services", "サービス"),
    ("Roll back", "切り戻し"),
    ("Name", "名前"),
    ("SLA target (%)", "SLA 目標 (%)"),
    ("Notice period (h)", "事前通知 (時間)"),
    ("Components", "構成要素"),
    ("Depends on", "依存先"),
    ("Registered", "登録"),
    ("Probes", "死活監視"),
    ("Checks", "監視対象"),
    ("Health", "状態"),
    ("Every (s)", "間隔 (秒)"),
    ("Last checked", "最終確認"),
    ("Latency (ms)", "応答時間 (ms)"),
    ("Error", "エラー"),
    ("Certificate days left", "証明書の残り日数"),
    ("Changed", "変化"),
    ("Heartbeats", "ハートビート"),
    ("Expected by", "次の期限"),
    ("Last ping", "最後の通知"),
    ("Pinged", "通知"),
    ("up", "正常"),
    ("down", "停止"),
    ("late", "遅延"),
    ("failed", "失敗"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_heaviest_language_spoken() {
        assert_eq!(accepted("ja-JP,ja;q=0.9,en;q=0.8"), Some("ja"));
        assert_eq!(accepted("fr, en;q=0.5, ja;q=0.7"), Some("ja"));
        assert_eq!(accepted("en-US, ja"), Some("en"));
        assert_eq!(accepted("de, fr"), None);
        assert_eq!(accepted("ja;q=0"), None);
        assert_eq!(accepted(""), None);
    }

    #[test]
    fn a_browsers_date_time_is_read_in_the_readers_zone() {
        let at = local_instant("2026-12-07T09:30", Tz::Asia__Tokyo).unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-07T00:30:00+00:00");
        assert!(local_instant("tomorrow", Tz::UTC).is_none());
    }

    #[test]
    fn times_are_shown_in_the_readers_zone() {
        let at: DateTime<Utc> = "2026-12-05T15:30:00Z".parse().unwrap();
        assert_eq!(when(&at, Tz::UTC), "2026-12-05 15:30 UTC");
        assert_eq!(when(&at, Tz::Asia__Tokyo), "2026-12-06 00:30 JST");
    }

    #[test]
    fn every_word_a_template_says_has_its_japanese() {
        for (name, text) in crate::view::TEMPLATES {
            let mut rest = *text;
            while let Some(at) = rest.find("t(\"") {
                rest = &rest[at + 3..];
                let end = rest.find("\")").expect("a closed t(\"…\")");
                let key = &rest[..end];
                assert!(
                    JA.iter().any(|(en, _)| *en == key),
                    "{name} says {key:?}, which has no Japanese in ui::JA"
                );
            }
        }
    }
}
