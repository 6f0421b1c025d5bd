#!/usr/bin/env python3
"""The web console in a real browser (Debian's chromium through chromium-driver, driven by
Selenium), as a technologist uses it. Run by WebConsoleTests.aTechnologistsDayInTheBrowser,
which starts dexad, the simulator, a worklist server and dexa-console, and plays the machine's side: this script
and the test meet through files in --sync (this script writes `scanning` when the scan
exposes and waits for `press`; writes `stopped`, waits for `restarting`, then writes
`reconnected`). Screenshots of each screen go to --shots. Prints one JSON line of what it saw.
"""
import json, os, sys, time

from meeting import Meeting, arguments
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait


def main():
    args = arguments()
    options = Options()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 "--hide-scrollbars", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    seen = {}
    try:
        wait = WebDriverWait(driver, 60, poll_frequency=0.05)
        text = lambda el_id: driver.find_element(By.ID, el_id).text

        def shot(name):
            driver.save_screenshot(os.path.join(args.shots, name + ".png"))

        def until(what, condition, timeout=60):
            try:
                WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition())
            except Exception:
                shot("failed-" + what.replace(" ", "-"))
                raise SystemExit(f"console.py: timed out waiting for {what}; page: {driver.find_element(By.TAG_NAME, 'body').text[:600]}; "
                                 f"error: {driver.find_element(By.ID, 'error').text}; events: {driver.find_element(By.ID, 'log').text[:1500]}")

        meeting = Meeting(args.sync, "console.py")
        sync_wait, sync_say = meeting.wait, meeting.say

        driver.get(args.url)
        until("the daemon linked", lambda: text("link") == "dexad connected")
        until("the device idle", lambda: "IDLE" in text("device"))
        seen["url_keeps_token"] = "token=" in driver.current_url
        # The day's scheduled patients from the worklist.
        until("the worklist's patients", lambda: "Chidi Okafor" in text("worklist"))
        seen["scheduled"] = text("worklist")
        shot("01-the-day")

        # A new exam from the form (a patient the worklist does not have).
        driver.find_element(By.ID, "pid").send_keys("P-0107")
        driver.find_element(By.ID, "pname").send_keys("Edith Walker")
        Select(driver.find_element(By.ID, "psex")).select_by_value("female")
        driver.execute_script("document.getElementById('pbirth').value = '1956-03-14'")
        driver.find_element(By.ID, "preferral").send_keys("Dr Who: postmenopausal, screening")
        driver.find_element(By.CSS_SELECTOR, "#new-exam button[type=submit]").click()
        until("the exam listed", lambda: "Edith Walker" in text("exams") and "Edith Walker" in text("detail-title"))
        shot("02-new-exam")

        # The checklist: a pregnancy blocks, at once and with its reason.
        Select(driver.find_element(By.ID, "c-pregnancy")).select_by_visible_text("yes")
        until("the block shown", lambda: "Blocked" in text("rules"))
        seen["blocked_text"] = text("rules").split("\n")[0]
        shot("03-checklist-blocked")
        def checklist(metal="none"):
            Select(driver.find_element(By.ID, "c-pregnancy")).select_by_visible_text("no")
            for field, value in (("c-contrast", "none"), ("c-nuclear", "none"), ("c-fracture", "none"), ("c-metal", metal),
                                 ("c-height", "162"), ("c-weight", "64")):
                el = driver.find_element(By.ID, field)
                el.clear()
                el.send_keys(value)
                driver.execute_script("arguments[0].dispatchEvent(new Event('change', {bubbles: true}))", el)
            for field in ("c-jewellery", "c-today", "c-identity", "c-referral"):
                Select(driver.find_element(By.ID, field)).select_by_value("true")
            until("the checklist complete", lambda: "Checklist complete" in text("rules") and "ready" in text("detail-title"))
        checklist()
        shot("04-checklist-complete")

        # Start: the scan exposes, the page says so across the room.
        driver.execute_script("[...document.querySelectorAll('#exam-actions button')].find(b => b.textContent === 'Start').click();")
        until("X-rays on", lambda: text("xray") == "X-RAYS ON" and driver.find_element(By.ID, "scan").is_displayed(), timeout=120)
        # The image grows as the lines arrive: rows drawn, and more of them a moment later.
        rows = lambda: int((text("image-caption").split(": ")[-1].split(" of ")[0] or "0")) if driver.find_element(By.ID, "image-box").is_displayed() else 0
        until("the image's first rows", lambda: rows() >= 5, timeout=60)
        first_rows = rows()
        until("the image growing", lambda: rows() >= first_rows + 10, timeout=60)
        # Enough of it to see the spine in the screenshot.
        until("the image half drawn", lambda: rows() >= 110, timeout=120)
        shot("05-scanning")
        seen["image_rows_seen"] = [first_rows, rows()]
        seen["image_caption"] = text("image-caption")
        # Grey pixels drawn (bone or tissue with a number; pixels without one are drawn red).
        seen["image_has_content"] = driver.execute_script(
            "const c = document.getElementById('image'); const d = c.getContext('2d').getImageData(0, 0, c.width, 100).data;"
            "let grey = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 40 && d[i] === d[i + 1]) grey++; return grey > 100;")
        seen["scanning_text"] = text("scan-site")

        # The spine's scan ends and is analysed; the results, the site's image with its
        # regions, and the report.
        # The buttons are drawn again every second: found and pressed in one step, in the page.
        def enabled(label):
            return driver.execute_script(
                "const b = [...document.querySelectorAll('#exam-actions button')].find(b => b.textContent === arguments[0]); return !!b && !b.disabled;", label)
        def press(label):
            driver.execute_script("[...document.querySelectorAll('#exam-actions button')].find(b => b.textContent === arguments[0]).click();", label)
        until("the spine done", lambda: enabled("Next site"), timeout=180)
        # The quick look's figures in the sites' table, and the results without a click.
        until("the quick look", lambda: "mean" in text("attempts") and "g/cm²" in text("attempts"), timeout=30)
        seen["quick_look"] = [line for line in text("attempts").split("\n") if line.startswith("AP spine")]
        until("the results table", lambda: "L1-L4" in text("results") or "L1–L4" in text("results"), timeout=30)
        until("the site's image", lambda: driver.execute_script(
            "const i = document.querySelector('#results img'); return !!i && i.complete && i.naturalWidth > 0;"), timeout=30)
        seen["results_heading"] = driver.find_element(By.CSS_SELECTOR, "#results h2").text
        seen["site_image_width"] = driver.execute_script("return document.querySelector('#results img').naturalWidth;")
        seen["report"] = driver.execute_script(
            "const r = await fetch('/api/report?exam=' + encodeURIComponent(selected) + '&token=' + encodeURIComponent(new URLSearchParams(location.search).get('token')));"
            "const b = await r.arrayBuffer(); const h = String.fromCharCode(...new Uint8Array(b.slice(0, 5)));"
            "return [r.status, r.headers.get('content-type'), b.byteLength, h];")
        driver.set_window_size(1400, 1500)
        driver.execute_script("document.getElementById('results').scrollIntoView()")
        shot("06-results")
        driver.set_window_size(1400, 1000)
        driver.execute_script("window.scrollTo(0, 0)")

        # A site skipped with its reason, in the page (no browser prompt).
        press("Skip site…")
        until("the reason form", lambda: driver.find_element(By.ID, "reason-form").is_displayed())
        Select(driver.find_element(By.ID, "reason-site")).select_by_value("right_hip")
        driver.find_element(By.ID, "reason-text").send_keys("right hip replaced (metal)")
        shot("06b-skip-reason")
        driver.find_element(By.ID, "reason-ok").click()
        until("the reason form closed", lambda: not driver.find_element(By.ID, "reason-form").is_displayed())
        seen["skipped"] = driver.execute_script(
            "const r = await fetch('/api/call', {method: 'POST', headers: {'X-Dexa-Token': new URLSearchParams(location.search).get('token'), 'Content-Type': 'application/json'},"
            " body: JSON.stringify({method: 'exam.get', params: {exam_id: selected}})}); const j = await r.json();"
            "return (j.result.attempts || []).filter(a => a.status === 'skipped').map(a => [a.site, a.reason]);")

        # The left hip, then the lateral spine: the exam completes, and its results give the
        # vertebrae with their heights and grades.
        press("Next site")
        until("X-rays on for the hip", lambda: text("xray") == "X-RAYS ON" and "left hip" in text("scan-site"), timeout=120)
        until("the hip done", lambda: enabled("Next site"), timeout=180)
        press("Next site")
        until("X-rays on for the lateral spine", lambda: text("xray") == "X-RAYS ON" and "lateral spine" in text("scan-site"), timeout=120)
        until("the exam completed", lambda: "completed" in text("detail-title"), timeout=240)
        until("the VFA's vertebrae in the results", lambda: "T12" in text("results") and ("No vertebral fracture" in text("results") or "Fractures (Genant)" in text("results")), timeout=60)
        lines = text("results").split("\n")
        table = lines[next(i for i, l in enumerate(lines) if l.startswith("vertebra anterior")) + 1:]
        seen["vfa_rows"] = [l for l in table if l.split(" ")[0] in ("T4", "T12", "L1", "L4")][:4]
        seen["results_text"] = text("results")
        # Every site's image loaded (a broken one is complete with no width).
        until("the sites' images", lambda: driver.execute_script(
            "return [...document.querySelectorAll('#results img')].every(i => i.complete);"), timeout=60)
        seen["site_images"] = driver.execute_script("return [...document.querySelectorAll('#results img')].map(i => [i.alt, i.naturalWidth]);")
        driver.set_window_size(1400, 2600)
        driver.execute_script("document.getElementById('results').scrollIntoView()")
        shot("06c-completed-results")
        driver.set_window_size(1400, 1000)

        # A reader's grade: T12 graded 2 (wedge) by the technologist, with the reason.
        press("Correct…")
        until("the correction form", lambda: driver.find_element(By.ID, "correct-form").is_displayed())
        Select(driver.find_element(By.ID, "correct-site")).select_by_value("lateral_spine")
        Select(driver.find_element(By.ID, "correct-kind")).select_by_value("grade")
        Select(driver.find_element(By.ID, "cf-vertebra")).select_by_value("T12")
        Select(driver.find_element(By.ID, "cf-grade")).select_by_value("2")
        Select(driver.find_element(By.ID, "cf-type")).select_by_value("wedge")
        driver.find_element(By.ID, "correct-reason").send_keys("visual reading: anterior wedging of T12")
        driver.execute_script("document.getElementById('correct-form').scrollIntoView()")
        shot("06d-correction")
        driver.find_element(By.ID, "correct-ok").click()
        until("the reader's grade shown", lambda: "the reader's grade" in text("results") and "Corrected by" in text("results"), timeout=30)
        seen["corrected_row"] = [line for line in text("results").split("\n") if line.startswith("T12")]
        driver.execute_script("[...document.querySelectorAll('#results h3')].find(h => h.textContent.startsWith('lateral spine')).scrollIntoView()")
        shot("06e-corrected")
        driver.execute_script("window.scrollTo(0, 0)")

        # A patient from the worklist: the exam made from the item, nothing retyped.
        driver.execute_script("[...document.querySelectorAll('#worklist li')].find(li => li.textContent.includes('Chidi Okafor')).querySelector('button').click();")
        until("the worklist's exam", lambda: "Chidi Okafor" in text("detail-title") and "created" in text("detail-title"))
        until("the item linked to its exam", lambda: driver.execute_script(
            "return [...document.querySelectorAll('#worklist li')].some(li => li.textContent.includes('Chidi Okafor') && li.textContent.includes('Exam '));"))
        seen["worklist_exam"] = driver.execute_script(
            "const r = await fetch('/api/call', {method: 'POST', headers: {'X-Dexa-Token': new URLSearchParams(location.search).get('token'), 'Content-Type': 'application/json'},"
            " body: JSON.stringify({method: 'exam.get', params: {exam_id: selected}})}); const j = await r.json();"
            "return [j.result.patient.name, j.result.patient.id, j.result.scheduled && j.result.scheduled.accession_number];")
        # Metal in the right hip takes it out of the plan; the spine first, then the technologist
        # (the metal was a removed piercing) adds the right hip back.
        checklist(metal="right_hip")
        seen["plan_before_add"] = text("detail-title")
        press("Start")
        until("the second exam's spine done", lambda: enabled("Next site"), timeout=180)
        # The button is drawn from the same exam as Next site, but the page may draw it again
        # between the two (an event's refresh): press it when it is there and enabled, not before
        # (once, under the clinic day's load, the form never opened).
        until("Add site possible", lambda: enabled("Add site…"), timeout=30)
        press("Add site…")
        until("the add form", lambda: driver.find_element(By.ID, "reason-form").is_displayed())
        Select(driver.find_element(By.ID, "reason-site")).select_by_value("right_hip")
        driver.find_element(By.ID, "reason-ok").click()
        until("the right hip in the plan", lambda: "right hip" in text("detail-title"), timeout=20)
        seen["plan_after_add"] = text("detail-title")

        # Five more tabs of the console (more than the three streams the console allows): they
        # share the first tab's stream (a shared worker), so the browser's connections stay
        # free for Stop, and each shows the scan live.
        main_tab = driver.current_window_handle
        tabs = []
        for _ in range(5):
            driver.switch_to.new_window("tab")
            driver.get(args.url)
            until("another tab linked", lambda: text("link") == "dexad connected")
            tabs.append(driver.current_window_handle)
        driver.switch_to.window(main_tab)
        streams = lambda: driver.execute_script(
            "const r = await fetch('/api/state', {headers: {'X-Dexa-Token': new URLSearchParams(location.search).get('token')}, cache: 'no-store'});"
            " return (await r.json()).console.streams;")
        seen["streams_with_six_tabs"] = streams()

        # Its left hip exposes; the test lets the page press Stop.
        until("Next site possible", lambda: enabled("Next site"), timeout=30)
        press("Next site")
        until("X-rays on for the second exam's hip", lambda: text("xray") == "X-RAYS ON" and "left hip" in text("scan-site"), timeout=120)
        # Every tab has the scan's live events: the progress bar moving on the shared stream.
        live = []
        for tab in tabs:
            driver.switch_to.window(tab)
            until("X-rays on in another tab", lambda: text("xray") == "X-RAYS ON", timeout=30)
            live.append(driver.execute_script("return Object.keys(progress).length > 0 && !document.getElementById('error').textContent.includes('Live events are off');"))
        seen["other_tabs_live"] = live
        driver.switch_to.window(main_tab)
        sync_say("scanning")
        sync_wait("press")
        # Stop with the keyboard, as a technologist would with hands on the patient.
        driver.find_element(By.TAG_NAME, "body").send_keys("\ue00c")  # Escape
        until("X-rays off", lambda: text("xray") == "X-rays off", timeout=20)
        until("the exam aborted", lambda: "aborted" in text("detail-title"), timeout=20)
        seen["after_stop"] = text("detail-title")
        shot("07-stopped")
        for tab in tabs:
            driver.switch_to.window(tab)
            until("X-rays off in another tab", lambda: text("xray") == "X-rays off", timeout=20)
            driver.close()
        driver.switch_to.window(main_tab)
        seen["streams_with_one_tab"] = streams()
        sync_say("stopped")

        # The daemon restarted under the page: it says so, and comes back by itself.
        sync_wait("restarting")
        until("disconnected shown", lambda: driver.find_element(By.ID, "disconnected").is_displayed(), timeout=30)
        seen["disconnected_text"] = text("disconnected").split("\n")[0]
        seen["xray_while_disconnected"] = text("xray")
        shot("08-disconnected")
        until("reconnected", lambda: text("link") == "dexad connected" and not driver.find_element(By.ID, "disconnected").is_displayed(), timeout=60)
        until("the exam's state after the restart", lambda: "aborted" in text("detail-title") or "aborted" in text("exams"), timeout=20)
        shot("09-reconnected")
        sync_say("reconnected")
        print(json.dumps(seen))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
