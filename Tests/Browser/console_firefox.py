#!/usr/bin/env python3
"""The web console in Firefox (Debian's firefox-esr, headless, driven through its own Marionette
protocol with Mozilla's marionette_driver from PyPI: Debian does not package geckodriver). Run
by WebConsoleTests.theConsoleInFirefox, which starts dexad, the simulator and dexa-console and
plays the machine's side through files in --sync, as console.py does for Chromium: this script
writes `scanning` when the scan exposes and waits for `press`, then presses Esc and writes
`stopped`. A shorter day than Chromium's: the page linked, the worklist's patients, an exam from
the form, its checklist, Start, X-rays on and the image growing, Esc. Prints one JSON line.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

from marionette_driver.by import By
from marionette_driver.keys import Keys
from marionette_driver.marionette import Marionette
from meeting import Meeting, arguments


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    args = arguments()
    profile = tempfile.mkdtemp(prefix="dexa-firefox-")
    port = free_port()
    with open(os.path.join(profile, "user.js"), "w") as f:
        f.write(f'user_pref("marionette.port", {port});\n')
        f.write('user_pref("browser.shell.checkDefaultBrowser", false);\n')
        f.write('user_pref("datareporting.policy.dataSubmissionEnabled", false);\n')
    browser = subprocess.Popen(["/usr/bin/firefox-esr", "--headless", "--marionette", "--no-remote", "--profile", profile,
                                "--width=1400", "--height=1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = {}
    m = None
    try:
        m = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
        m.start_session()
        m.timeout.script = 30
        text = lambda el_id: m.find_element(By.ID, el_id).text

        def shot(name):
            with open(os.path.join(args.shots, name + ".png"), "wb") as f:
                f.write(m.screenshot(format="binary"))

        def until(what, condition, timeout=60):
            end = time.time() + timeout
            while time.time() < end:
                try:
                    if condition():
                        return
                except Exception:
                    pass
                time.sleep(0.05)
            shot("firefox-failed-" + what.replace(" ", "-"))
            raise SystemExit(f"console_firefox.py: timed out waiting for {what}; page: {m.find_element(By.TAG_NAME, 'body').text[:600]}")

        meeting = Meeting(args.sync, "console_firefox.py")
        sync_wait, sync_say = meeting.wait, meeting.say

        def button(label):
            return m.execute_script("return [...document.querySelectorAll('#exam-actions button')].some(b => b.textContent === arguments[0] && !b.disabled);",
                                    script_args=[label])

        def press(label):
            m.execute_script("[...document.querySelectorAll('#exam-actions button')].find(b => b.textContent === arguments[0]).click();", script_args=[label])

        def set_field(el_id, value):
            # As typed or chosen: the value, then the change event the page listens for.
            m.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                             "e.dispatchEvent(new Event('change', {bubbles: true}));", script_args=[el_id, value])

        m.navigate(args.url)
        until("the daemon linked", lambda: text("link") == "dexad connected")
        until("the device idle", lambda: "IDLE" in text("device"))
        until("the worklist's patients", lambda: "Chidi Okafor" in text("worklist"))
        seen["user_agent"] = m.execute_script("return navigator.userAgent")
        shot("firefox-01-the-day")

        for field, value in (("pid", "P-0200"), ("pname", "Firefox Patient"), ("psex", "female"), ("pbirth", "1950-05-05"), ("preferral", "screening")):
            set_field(field, value)
        m.find_element(By.CSS_SELECTOR, "#new-exam button[type=submit]").click()
        until("the exam listed", lambda: "Firefox Patient" in text("detail-title"))
        for field, value in (("c-pregnancy", "no"), ("c-contrast", "none"), ("c-nuclear", "none"), ("c-fracture", "none"), ("c-metal", "none"),
                             ("c-height", "160"), ("c-weight", "60"), ("c-jewellery", "true"), ("c-today", "true"), ("c-identity", "true"),
                             ("c-referral", "true")):
            set_field(field, value)
        until("the checklist complete", lambda: "Checklist complete" in text("rules") and "ready" in text("detail-title"))

        until("Start possible", lambda: button("Start"))
        press("Start")
        until("X-rays on", lambda: text("xray") == "X-RAYS ON", timeout=120)
        rows = lambda: int((text("image-caption").split(": ")[-1].split(" of ")[0] or "0")) if m.find_element(By.ID, "image-box").is_displayed() else 0
        until("the image's first rows", lambda: rows() >= 5)
        first = rows()
        until("the image growing", lambda: rows() >= first + 20)
        seen["image_rows_seen"] = [first, rows()]
        seen["image_has_content"] = m.execute_script(
            "const c = document.getElementById('image'); const d = c.getContext('2d').getImageData(0, 0, c.width, Math.min(60, c.height)).data;"
            "let grey = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 40 && d[i] === d[i + 1]) grey++; return grey > 100;")
        seen["xray_pill_colour"] = m.execute_script("return getComputedStyle(document.getElementById('xray')).backgroundColor")
        shot("firefox-02-scanning")
        sync_say("scanning")
        sync_wait("press")
        # Esc from the keyboard, as in Chromium.
        m.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
        until("X-rays off", lambda: text("xray") == "X-rays off", timeout=20)
        until("the exam aborted", lambda: "aborted" in text("detail-title"), timeout=20)
        seen["after_stop"] = text("detail-title")
        shot("firefox-03-stopped")
        sync_say("stopped")
        print(json.dumps(seen))
    finally:
        try:
            if m is not None:
                m.delete_session()
        except Exception:
            pass
        browser.terminate()
        try:
            browser.wait(10)
        except Exception:
            browser.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
