"""The browser scripts' side of their meeting with the Swift test that runs them: files in a
folder (--sync). The script says where it is (`scanning`, `stopped`, ...) and waits for the
test's word (`press`, `restarting`, ...)."""
import argparse, os, time


class Meeting:
    def __init__(self, folder, who):
        self.folder, self.who = folder, who

    def wait(self, name, timeout=120):
        path = os.path.join(self.folder, name)
        end = time.time() + timeout
        while not os.path.exists(path):
            if time.time() > end:
                raise SystemExit(f"{self.who}: the test never wrote {name}")
            time.sleep(0.02)

    def say(self, name):
        open(os.path.join(self.folder, name), "w").close()


def arguments():
    """The page's URL (with its token), the folder for screenshots and the meeting's folder."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--shots", required=True)
    ap.add_argument("--sync", required=True)
    args = ap.parse_args()
    os.makedirs(args.shots, exist_ok=True)
    return args
