"""Package metadata comes from settings.ini (nbdev 2); this file only reads it."""
from configparser import ConfigParser
import setuptools, shlex
from pathlib import Path

config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

expected = ('version description keywords author author_email license '
            'min_python lib_name user branch git_url requirements '
            'dev_requirements hf_requirements web_requirements console_scripts').split()
missing = [o for o in expected if o not in cfg]
assert not missing, f"settings.ini is missing: {missing}"

licenses = {'apache2': 'Apache-2.0'}  # settings.ini's name -> SPDX expression
statuses = ['1 - Planning', '2 - Pre-Alpha', '3 - Alpha', '4 - Beta',
            '5 - Production/Stable', '6 - Mature', '7 - Inactive']
# status = 3 means '3 - Alpha': the number a trove classifier starts with
status = next((s for s in statuses if s.split()[0] == cfg['status'].strip()), None)
assert status, f"settings.ini: status = {cfg['status']} is not one of 1 to 7"

py_versions = '3.10 3.11 3.12 3.13'.split()

lic = licenses[cfg['license'].lower()]
min_python = cfg['min_python']
requirements = shlex.split(cfg['requirements'])
dev_requirements = shlex.split(cfg['dev_requirements'])
hf_requirements = shlex.split(cfg['hf_requirements'])
web_requirements = shlex.split(cfg['web_requirements'])
scripts = [o.strip() for o in cfg['console_scripts'].split('\n') if o.strip()]

readme_path = Path(__file__).parent/'README.md'
readme = readme_path.read_text(encoding='utf-8') if readme_path.exists() else ''

setuptools.setup(
    name=cfg['lib_name'],
    license_expression=lic,  # SPDX; License :: classifiers are deprecated
    license_files=['LICENSE'],
    classifiers=[
        'Development Status :: ' + status,
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: ' + o
         for o in py_versions[py_versions.index(min_python):]],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=['llmbook', 'llmbook.*']),
    include_package_data=True,
    install_requires=requirements,
    extras_require={'dev': dev_requirements, 'hf': hf_requirements,
                    'web': web_requirements},
    python_requires='>=' + cfg['min_python'],
    long_description=readme,
    long_description_content_type='text/markdown',
    zip_safe=False,
    entry_points={
        'console_scripts': scripts,
        'nbdev': [f'{cfg["lib_path"]}={cfg["lib_path"]}._modidx:d'],
    },
    version=cfg['version'],
    author=cfg['author'],
    author_email=cfg['author_email'],
    description=cfg['description'],
    keywords=cfg['keywords'],
)
