// Screenshot of the Hindsight connection form in the Airflow UI, for docs/connection.md.
//
//     node scripts/docs/connection_form.mjs <airflow UI URL> <output PNG>
//
// Needs an Airflow API server on that URL with the provider installed and every user an admin
// (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True): scripts/docs/connection_form.py starts one and runs
// this script. Chromium comes from the system (/usr/bin/chromium, or CHROMIUM=...), playwright-core
// from `npm install` in scripts/docs/. The form opens one section at a time, so the picture stacks two
// views of the same form: "Standard Fields" (base URL, API key) and "Extra Fields" (plan, pace, ...,
// the shared budget's connection and table).

import { chromium } from "playwright-core";

const [uiUrl, output] = process.argv.slice(2);
if (!uiUrl || !output) {
  console.error("usage: node connection_form.mjs <airflow UI URL> <output PNG>");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 760, height: 1800 }, deviceScaleFactor: 1 });
  await page.goto(new URL("connections", uiUrl.endsWith("/") ? uiUrl : `${uiUrl}/`).href);
  await page.getByRole("button", { name: "Add Connection" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByLabel("Connection ID").fill("hindsight_default");
  await dialog.getByRole("combobox").fill("Hindsight");
  await page.getByRole("option", { name: "Hindsight", exact: true }).click();

  await dialog.getByLabel("API key").fill("example-api-key-not-real");
  await dialog.getByRole("heading", { name: "Add Connection" }).click();
  const standard = await dialog.screenshot();

  await dialog.getByRole("button", { name: "Extra Fields", exact: true }).click();
  await dialog.getByRole("combobox", { name: "Plan" }).click();
  await page.getByRole("option", { name: "growth", exact: true }).click();
  // The form's labels are not tied to their inputs: find the field by its name.
  await dialog.locator('input[name="element_budget_conn_id"]').fill("hindsight_budget");
  await dialog.getByRole("heading", { name: "Add Connection" }).click(); // move the focus off the dropdown
  await page.waitForTimeout(500); // let the accordion finish its animation
  // The second view starts at the sections: the fields above them are the same as in the first.
  const form = await dialog.boundingBox();
  const sections = await dialog.locator('[data-scope="accordion"][data-part="root"]').boundingBox();
  const top = sections.y - 16;
  const extra = await page.screenshot({
    clip: { x: form.x, y: top, width: form.width, height: form.y + form.height - top },
  });

  const img = (png) => `<img src="data:image/png;base64,${png.toString("base64")}">`;
  await page.setContent(
    `<body style="margin:0;padding:16px;background:#e2e8f0;display:flex;flex-direction:column;gap:16px;` +
      `align-items:flex-start;width:max-content">${img(standard)}${img(extra)}</body>`,
  );
  await page.locator("body").screenshot({ path: output });
  console.log(`wrote ${output}`);
} finally {
  await browser.close();
}
